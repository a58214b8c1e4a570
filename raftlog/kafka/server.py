"""The Kafka listener: an asyncio TCP server speaking Kafka's binary protocol, over TLS when its
listener is SSL or SASL_SSL (listener.security.protocol.map; raftlog/tls.py's SocketServerTls),
with SASL (PLAIN, SCRAM-SHA-256/512) per connection on SASL_* listeners (raftlog/kafka/sasl.py).

Per connection, requests are answered in the order they arrive. Produce requests a client
pipelines are served side by side (KAFKA_MAX_IN_FLIGHT_PER_CONNECTION queued behind the one being
answered; more wait in the socket), started in
arrival order, so their batches reach each partition's log in that order (an idempotent
producer's sequence check orders them in any case, as for gRPC producers); every other request is
served alone, after all before it are answered, as a Kafka broker serves every request (it mutes
the connection while one is in progress; requests behind it wait in the socket). A frame larger than
KAFKA_MAX_FRAME_BYTES, or one that does not decode, closes that connection only; an API or
version not in `handlers.API_VERSIONS` is answered UNSUPPORTED_VERSION. An error a handler raises
for the whole request (a RaftlogError) becomes that response's top-level error code where it has
one; an unexpected exception is logged and answered UNKNOWN_SERVER_ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import time

from kio.schema.errors import ErrorCode

from raftlog.authentication import Authenticator
from raftlog.authorizer.authorizer import Caller
from raftlog.config import PLAINTEXT
from raftlog.errors import RaftlogError
from raftlog.kafka import handlers
from raftlog.kafka.client_info import CURRENT_CLIENT, ClientInfo
from raftlog.kafka.errors import code_of_error
from raftlog.kafka.protocol import (
    API_VERSIONS_KEY,
    PRODUCE_KEY,
    SIZE,
    CloseConnection,
    MalformedRequest,
    RequestFrame,
    can_answer,
    decode_request,
    encode_response,
    error_response,
)
from raftlog.kafka.sasl import SASL_AUTHENTICATE_KEY, SASL_HANDSHAKE_KEY, ConnectionSasl
from raftlog.limits import KAFKA_MAX_FRAME_BYTES, KAFKA_MAX_IN_FLIGHT_PER_CONNECTION, KAFKA_TLS_HANDSHAKE_TIMEOUT_S
from raftlog.principals import ANONYMOUS, serving_as
from raftlog.tls import SocketServerTls

log = logging.getLogger(__name__)


class KafkaServer:
    def __init__(
        self,
        broker: handlers.KafkaBroker,
        host: str,
        port: int,
        metrics=None,
        tls: SocketServerTls | None = None,
        authenticator: Authenticator | None = None,
        protocol: str = PLAINTEXT,
    ):
        assert authenticator is not None or protocol == PLAINTEXT, f"a {protocol} listener needs an authenticator"
        self._broker = broker
        self._authenticator = authenticator
        self._protocol = protocol
        self._host = host
        self._port = port
        self._metrics = metrics
        self._tls = tls  # an SSL or SASL_SSL listener's (raftlog/tls.py); None: PLAINTEXT, SASL_PLAINTEXT
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Binds the port (an OSError if it cannot); connections are served from then on."""
        # The transport alone: asyncio's ssl does the handshake before _serve_connection sees the
        # connection, which then reads requests from it as from a plaintext one. A client that does
        # not complete the handshake (a plaintext Kafka client: its first frame is no ClientHello)
        # is disconnected there; librdkafka reports that as a possible security.protocol mismatch.
        self._server = await asyncio.start_server(
            self._serve_connection,
            self._host,
            self._port,
            ssl=self._tls.server_context() if self._tls is not None else None,
            ssl_handshake_timeout=KAFKA_TLS_HANDSHAKE_TIMEOUT_S if self._tls is not None else None,
        )

    async def serve(self) -> None:
        """Serves until stop() (the node's TaskSupervisor runs this as a critical task)."""
        assert self._server is not None, "the Kafka listener is not started"
        await self._server.serve_forever()

    @property
    def port(self) -> int:
        assert self._server is not None, "the Kafka listener is not started"
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        # Who the connection's requests come from (raftlog/principals.py): the SASL login's user
        # on SASL_* listeners (none until it logs in: only ApiVersions and the SASL APIs are
        # served), the client certificate's principal on SSL ones, else User:ANONYMOUS.
        sasl = (
            ConnectionSasl(self._authenticator, self._broker.listener, self._protocol)
            if self._authenticator is not None
            else None
        )
        certificate_principal = (
            self._tls.peer_principal(writer.get_extra_info("ssl_object")) if self._tls is not None else ANONYMOUS
        )
        # Answers in the order the requests came: each request's answer is a task, queued as it
        # is read; the sender writes them from the queue's head. Only Produce requests overlap
        # (a producer pipelining acks=all batches would otherwise wait a replication round trip
        # per request, as with one in flight); any other request waits until everything before it
        # is answered and is answered before the next one is read, so it sees what they did.
        answers: asyncio.Queue[asyncio.Task] = asyncio.Queue(KAFKA_MAX_IN_FLIGHT_PER_CONNECTION)
        sender = asyncio.create_task(self._send_answers(answers, writer, peer, task))
        try:
            while True:
                request = await self._read_request(reader, peer)
                if request is None:
                    break
                overlaps = request.api_key == PRODUCE_KEY
                if not overlaps:
                    await answers.join()
                # The answer's task copies this context: the group APIs record members with it.
                CURRENT_CLIENT.set(ClientInfo(request.client_id or "", host))
                caller = Caller(self._principal(sasl, certificate_principal), host)
                await answers.put(asyncio.create_task(self._answer(request, caller, sasl)))
                if not overlaps:
                    await answers.join()
                    # SASL requests are not Produce: served alone, so the login is done (or failed) here
                    if sasl is not None and sasl.close_after_answer:
                        log.info("kafka: closing %s after a failed SASL authentication", peer)
                        break
            await answers.join()  # the client may still read the answers to what it sent
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client went away mid-frame or mid-answer
        except asyncio.CancelledError:
            # stop() cancels open connections, as the sender does to close one. Ended quietly:
            # asyncio's stream callback (3.11) logs a cancelled connection task as an error.
            return
        except Exception:  # noqa: BLE001 - a bug in answering one connection closes it, not the listener
            log.exception("kafka: closing %s after an unexpected error", peer)
            return
        finally:
            sender.cancel()
            while not answers.empty():
                answers.get_nowait().cancel()  # the client is gone: nobody reads these answers
            self._connections.discard(task)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader, peer) -> RequestFrame | None:
        """The next request, None when the connection is to be closed (the client closed it, or a
        frame too large or malformed: logged)."""
        try:
            size_bytes = await reader.readexactly(SIZE.size)
        except asyncio.IncompleteReadError:
            return None  # the client closed the connection
        (size,) = SIZE.unpack(size_bytes)
        if not 0 <= size <= KAFKA_MAX_FRAME_BYTES:
            log.warning("kafka: closing %s: a frame of %d bytes (at most %d)", peer, size, KAFKA_MAX_FRAME_BYTES)
            return None
        frame = await reader.readexactly(size)
        try:
            return decode_request(frame, handlers.API_VERSIONS)
        except MalformedRequest as exc:
            log.warning("kafka: closing %s: malformed request: %s", peer, exc)
            return None

    async def _send_answers(
        self, answers: asyncio.Queue[asyncio.Task], writer: asyncio.StreamWriter, peer, reading: asyncio.Task
    ) -> None:
        """Writes each answer when it is ready, in the queue's order; an answer that closes the
        connection (or a write that fails) ends the reading task too."""
        try:
            while True:
                answer = await answers.get()
                try:
                    response = await answer
                except MalformedRequest as exc:
                    log.warning("kafka: closing %s: malformed request: %s", peer, exc)
                    return
                except CloseConnection as exc:
                    log.info("kafka: closing %s: %s", peer, exc)
                    return
                if response is not None:  # Produce with acks=0 has no response
                    writer.write(response)
                    await writer.drain()
                answers.task_done()
        except ConnectionError:
            return  # the client went away mid-answer
        except Exception:  # noqa: BLE001 - a bug in answering one connection closes it, not the listener
            log.exception("kafka: closing %s after an unexpected error", peer)
        finally:
            if not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                reading.cancel()

    @staticmethod
    def _principal(sasl: ConnectionSasl | None, certificate_principal: str) -> str:
        if sasl is not None and sasl.required:
            return sasl.principal or ANONYMOUS  # None: not logged in yet (ApiVersions, the SASL APIs)
        return certificate_principal

    async def _answer(self, request: RequestFrame, caller: Caller, sasl: ConnectionSasl | None = None) -> bytes | None:
        """The response frame to one request, None for none (acks=0); closes nothing itself."""
        key, version = request.api_key, request.api_version
        if sasl is not None and not sasl.allows(key):
            assert self._authenticator is not None
            self._authenticator.refused(self._broker.listener, "", ANONYMOUS, f"api {key} before SASL authentication")
            raise CloseConnection(f"ILLEGAL_SASL_STATE: api {key} before SASL authentication")
        if request.body is None:
            return self._unsupported(request)
        handler = self._sasl_handler(key, sasl)
        name = "Kafka" + handlers.API_NAMES[key]
        started = time.perf_counter()
        failure: str | None = None
        if self._metrics:
            self._metrics.request_started(name)
        try:
            with serving_as(caller.principal):  # for code that asks request_principal()
                body = await handler(self._broker, request.body, version, caller)
        except CloseConnection:
            failure = "CLOSED"
            raise
        except RaftlogError as exc:
            failure = exc.reason
            body = error_response(key, version, code_of_error(exc))
        except Exception:  # noqa: BLE001 - one request's bug answers that request, the listener goes on
            log.exception("kafka: %s v%d failed", name, version)
            failure = "UNKNOWN_SERVER_ERROR"
            body = error_response(key, version, ErrorCode.unknown_server_error)
        finally:
            if self._metrics:
                self._metrics.request_finished(name, time.perf_counter() - started, failure)
        if body is None:
            return None
        return encode_response(key, version, request.correlation_id, body)

    @staticmethod
    def _sasl_handler(key: int, sasl: ConnectionSasl | None) -> handlers.Handler:
        """The handler of an API: the connection's SASL state for the SASL APIs."""
        if key not in (SASL_HANDSHAKE_KEY, SASL_AUTHENTICATE_KEY):
            return handlers.HANDLERS[key][2]
        state = sasl

        async def sasl_api(broker, body, version, caller):
            if state is None:  # a listener without SASL: Kafka answers a handshake ILLEGAL_SASL_STATE
                raise RaftlogError("ILLEGAL_SASL_STATE", "this listener does not authenticate with SASL")
            if key == SASL_HANDSHAKE_KEY:
                return await state.handshake(body, version)
            return await state.authenticate(body, version)

        return sasl_api

    def _unsupported(self, request: RequestFrame) -> bytes | None:
        key, version = request.api_key, request.api_version
        if key == API_VERSIONS_KEY:
            # As Kafka does (KIP-511): a client asking with a newer ApiVersions than we know gets a
            # v0 answer with UNSUPPORTED_VERSION and our versions, and asks again with one of them.
            body = handlers.api_versions_response(0, ErrorCode.unsupported_version)
            return encode_response(key, 0, request.correlation_id, body)
        if not can_answer(key, version):
            raise MalformedRequest(f"api {key} v{version} is not a Kafka request that can be answered")
        return encode_response(
            key, version, request.correlation_id, error_response(key, version, ErrorCode.unsupported_version)
        )
