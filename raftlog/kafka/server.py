"""The Kafka listener: an asyncio TCP server speaking Kafka's binary protocol.

Per connection, requests are served one at a time in the order they arrive and answered in that
order, as a Kafka broker does (it mutes a connection while one of its requests is in progress):
a client may pipeline requests, they wait in the socket. A frame larger than
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
from raftlog.config import PLAINTEXT
from raftlog.errors import RaftlogError
from raftlog.kafka import handlers
from raftlog.kafka.errors import code_of_error
from raftlog.kafka.protocol import (
    API_VERSIONS_KEY,
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
from raftlog.limits import KAFKA_MAX_FRAME_BYTES
from raftlog.principals import ANONYMOUS, serving_as

log = logging.getLogger(__name__)


class KafkaServer:
    def __init__(
        self,
        broker: handlers.KafkaBroker,
        host: str,
        port: int,
        metrics=None,
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
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Binds the port (an OSError if it cannot); connections are served from then on."""
        self._server = await asyncio.start_server(self._serve_connection, self._host, self._port)

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
        sasl = (
            ConnectionSasl(self._authenticator, self._broker.listener, self._protocol)
            if self._authenticator is not None
            else None
        )
        try:
            while True:
                try:
                    size_bytes = await reader.readexactly(SIZE.size)
                except asyncio.IncompleteReadError:
                    return  # the client closed the connection
                (size,) = SIZE.unpack(size_bytes)
                if not 0 <= size <= KAFKA_MAX_FRAME_BYTES:
                    log.warning(
                        "kafka: closing %s: a frame of %d bytes (at most %d)", peer, size, KAFKA_MAX_FRAME_BYTES
                    )
                    return
                frame = await reader.readexactly(size)
                try:
                    request = decode_request(frame, handlers.API_VERSIONS)
                    response = await self._answer(request, sasl)
                except MalformedRequest as exc:
                    log.warning("kafka: closing %s: malformed request: %s", peer, exc)
                    return
                except CloseConnection as exc:
                    log.info("kafka: closing %s: %s", peer, exc)
                    return
                if response is None:
                    continue  # Produce with acks=0 has no response
                writer.write(response)
                await writer.drain()
                if sasl is not None and sasl.close_after_answer:
                    log.info("kafka: closing %s after a failed SASL authentication", peer)
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client went away mid-frame or mid-answer
        except asyncio.CancelledError:
            # stop() cancels open connections. Ended quietly: asyncio's stream callback (3.11)
            # logs a cancelled connection task as an error.
            return
        except Exception:  # noqa: BLE001 - a bug in answering one connection closes it, not the listener
            log.exception("kafka: closing %s after an unexpected error", peer)
            return
        finally:
            self._connections.discard(task)
            writer.close()

    async def _answer(self, request: RequestFrame, sasl: ConnectionSasl | None = None) -> bytes | None:
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
            with serving_as(sasl.principal if sasl is not None and sasl.principal else ANONYMOUS):
                body = await handler(self._broker, request.body, version)
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
    def _sasl_handler(key: int, sasl: ConnectionSasl | None):
        """The handler of an API: the connection's SASL state for the SASL APIs."""
        if key not in (SASL_HANDSHAKE_KEY, SASL_AUTHENTICATE_KEY):
            return handlers.HANDLERS[key][2]
        state = sasl

        async def sasl_api(broker, body, version):
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
