"""The Kafka listener over TLS, in process (no cluster): ApiVersions, which needs no broker object,
answered through SocketServerTls with each ssl.client.auth mode, a plaintext client disconnected,
and a certificate replaced on disk served to the next connection."""

from __future__ import annotations

import asyncio
import os
import ssl
import struct
from pathlib import Path

import pytest
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.api_versions.v3.response import ApiVersionsResponse
from kio.schema.request_header.v2.header import RequestHeader
from kio.serial import entity_reader, entity_writer

from raftlog.cluster.certificates import LocalCA, serial_number
from raftlog.kafka.server import KafkaServer
from raftlog.tls import SocketServerTls, TlsError, TlsFiles


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> LocalCA:
    ca = LocalCA(tmp_path_factory.mktemp("tls"))
    ca.ensure()
    ca.issue_node(1)
    ca.issue("alice", "alice")
    return ca


def files(ca: LocalCA) -> TlsFiles:
    node = ca.node(1)
    return TlsFiles(node.certificate, node.key, ca.ca.certificate)


def api_versions_frame(correlation_id: int) -> bytes:
    import io

    buffer = io.BytesIO()
    entity_writer(RequestHeader)(
        buffer, RequestHeader(request_api_key=18, request_api_version=3, correlation_id=correlation_id, client_id="t")
    )
    entity_writer(ApiVersionsRequest)(buffer, ApiVersionsRequest(client_software_name="t", client_software_version="1"))
    return struct.pack(">i", len(buffer.getvalue())) + buffer.getvalue()


async def ask_api_versions(port: int, context: ssl.SSLContext | None) -> ApiVersionsResponse:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(api_versions_frame(5))
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        frame = await reader.readexactly(size)
        assert struct.unpack_from(">i", frame)[0] == 5
        return entity_reader(ApiVersionsResponse)(frame, 4)[0]
    finally:
        writer.close()


def client_context(ca: LocalCA, who: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.ca.certificate))
    context.check_hostname = False
    if who is not None:
        context.load_cert_chain(str(ca.directory / f"{who}.pem"), str(ca.directory / f"{who}.key"))
    return context


async def serving(tls: SocketServerTls) -> KafkaServer:
    server = KafkaServer(None, "127.0.0.1", 0, tls=tls)  # type: ignore[arg-type]  # ApiVersions needs no broker
    await server.start()
    return server


def test_requested_lets_a_client_in_with_or_without_a_certificate_but_not_with_an_untrusted_one(ca, tmp_path):
    async def run():
        server = await serving(SocketServerTls(files(ca), "requested"))
        try:
            assert (await ask_api_versions(server.port, client_context(ca, None))).api_keys
            assert (await ask_api_versions(server.port, client_context(ca, "alice"))).api_keys
            stranger = LocalCA(tmp_path / "other")
            stranger.ensure()
            stranger.issue("mallory", "mallory")
            untrusted = client_context(ca, None)
            untrusted.load_cert_chain(str(tmp_path / "other" / "mallory.pem"), str(tmp_path / "other" / "mallory.key"))
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await ask_api_versions(server.port, untrusted)
        finally:
            await server.stop()

    asyncio.run(run())


def test_required_refuses_a_client_without_a_certificate_and_plaintext_is_disconnected(ca):
    async def run():
        server = await serving(SocketServerTls(files(ca), "required"))
        try:
            assert (await ask_api_versions(server.port, client_context(ca, "alice"))).api_keys
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await ask_api_versions(server.port, client_context(ca, None))
            # A plaintext Kafka client: its request is no ClientHello, the connection is closed
            # (an error for the client, not a wait).
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(ask_api_versions(server.port, None), 30)
        finally:
            await server.stop()

    asyncio.run(run())


def test_a_replaced_certificate_is_served_to_the_next_connection(ca, tmp_path):
    node = ca.node(1)
    own = TlsFiles(tmp_path / "node.pem", tmp_path / "node.key", ca.ca.certificate)
    own.certificate.write_bytes(node.certificate.read_bytes())  # type: ignore[union-attr]
    own.key.write_bytes(node.key.read_bytes())  # type: ignore[union-attr]

    async def served_serial(port: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(ca, None))
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return serial_number(ssl.DER_cert_to_PEM_cert(der).encode())

    async def run():
        tls = SocketServerTls(own, "none")
        server = await serving(tls)
        try:
            before = await served_serial(server.port)
            renewed = ca.issue("node-1-renewed", "node-1", 1)
            os.replace(renewed.key, own.key)  # type: ignore[arg-type]
            os.replace(renewed.certificate, own.certificate)  # type: ignore[arg-type]
            after = await served_serial(server.port)
            assert after == serial_number(Path(own.certificate).read_bytes()) and after != before
            assert tls.reloads == 1
            # A half-written key keeps the certificate loaded last.
            Path(own.key).write_bytes(b"not a key")  # type: ignore[arg-type]
            assert await served_serial(server.port) == after
        finally:
            await server.stop()

    asyncio.run(run())


def test_an_ssl_listener_without_its_files_is_a_clear_error(ca):
    with pytest.raises(TlsError, match="needs ssl.certificate.location"):
        SocketServerTls(TlsFiles(None, None, ca.ca.certificate), "none")
    with pytest.raises(TlsError, match="ssl.client.auth=requested needs ssl.truststore.location"):
        SocketServerTls(TlsFiles(ca.node(1).certificate, ca.node(1).key, None), "requested")


def test_a_client_certificate_names_the_callers_principal(ca, monkeypatch):
    """On an SSL Kafka listener every request's Caller is the client certificate's principal (CN by
    ssl.principal.mapping.rules), User:ANONYMOUS without one: what the authorizer checks."""
    from raftlog.kafka import handlers

    seen: list[str] = []
    low, high, answer = handlers.HANDLERS[18]

    async def recording(broker, request, version, caller):
        seen.append(caller.principal)
        return await answer(broker, request, version, caller)

    monkeypatch.setitem(handlers.HANDLERS, 18, (low, high, recording))

    async def run():
        server = await serving(SocketServerTls(files(ca), "requested"))
        try:
            await ask_api_versions(server.port, client_context(ca, "alice"))
            await ask_api_versions(server.port, client_context(ca, None))
        finally:
            await server.stop()

    asyncio.run(run())
    assert seen == ["User:alice", "User:ANONYMOUS"]
