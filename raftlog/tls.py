"""TLS for raftlog's gRPC listeners and channels and its Kafka listeners, and who is on the other
end of a call.

Owns: the ``ssl.*`` settings in PEM form (``TlsFiles``), server credentials that pick up
certificates replaced on disk for new connections (``ServerTls`` for gRPC, ``SocketServerTls``
for the Kafka listener's asyncio sockets; one reload rule, ``CertificateReloader``), channel credentials for nodes
and clients (``ClientSecurity``), reading a peer's certificate into its principal (the naming
rules, Kafka's ``ssl.principal.mapping.rules``, are raftlog/principals.py) and the node ids it
names (``certificate_node_ids``), and the check that a peer is the node it claims to be
(``PeerAuthenticator.check_node``). It does not decide what a principal may do: ACLs come later
and start from ``PeerAuthenticator.identity``.

Outbound credentials are read from the files when a channel is opened: the Raft transport opens a
new channel on every reconnect; ``Peers`` keeps its channels (controller calls, replica fetches),
so a node's own renewed client certificate is used there only after a restart.

A node's certificate names its node id as a SAN URI ``raftlog:node:<id>``; a certificate without
such URIs names the node ``<id>`` by a common name ``node-<id>``. ``raftlog cluster up --secure``
writes both.

Certificate reload: grpc asks the ``ServerTls`` fetcher for the certificate before every TLS
handshake; the fetcher compares the files' (inode, size, mtime) with what it loaded, and loads
them again when they differ or after ``request_reload`` (the node calls it on SIGHUP). Connections
open already keep their session; new ones get the new certificate.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from cryptography import x509

from raftlog.config import (
    CLIENT_AUTH_MODES,
    GRPC_REQUESTED_UNSUPPORTED,
    GRPC_SASL_MECHANISMS,
    PLAINTEXT,
    SASL_PLAINTEXT,
    SASL_PROTOCOLS,
    SECURITY_PROTOCOLS,
    SSL,
    TLS_PROTOCOLS,
)
from raftlog.errors import Errors, RaftlogError
from raftlog.principals import ANONYMOUS, PrincipalMapper
from raftlog.sasl_login import SaslCredentials, SessionLogin

log = logging.getLogger(__name__)
T = TypeVar("T")

NODE_URI_PREFIX = "raftlog:node:"
NODE_CN_PATTERN = re.compile(r"node-(\d+)")


class TlsError(ValueError):
    """Unusable TLS settings or files; the message is one line for an operator."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: ``ssl.certificate.location`` (this side's certificate chain, leaf first),
    ``ssl.key.location`` (its private key), ``ssl.truststore.location`` (CA bundle to verify peers)."""

    certificate: Path | None
    key: Path | None
    truststore: Path | None

    @classmethod
    def from_config(cls, config) -> TlsFiles:
        """A node's files, from its ``ssl.*.location`` settings (anything indexable by name)."""
        return cls(
            *(
                Path(config[key]) if config[key] is not None else None
                for key in ("ssl.certificate.location", "ssl.key.location", "ssl.truststore.location")
            )
        )

    def _read(self, path: Path | None, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise TlsError(f"{what} {path}: {exc.strerror or exc}") from None

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(certificate chain, key, CA bundle) as bytes, None where no file is set."""
        return (
            self._read(self.certificate, "ssl.certificate.location"),
            self._read(self.key, "ssl.key.location"),
            self._read(self.truststore, "ssl.truststore.location"),
        )

    def stamp(self) -> tuple:
        """Changes when any of the files is replaced or rewritten."""
        stamps = []
        for path in (self.certificate, self.key, self.truststore):
            try:
                st = os.stat(path) if path is not None else None
            except OSError:
                st = None
            stamps.append(None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)


class CertificateReloader:
    """The reload rule of every server side (gRPC and the Kafka listener): load the files again when
    their (inode, size, mtime) changed or after ``request_reload`` (SIGHUP); a file that cannot be
    read keeps what was loaded before."""

    def __init__(self, files: TlsFiles):
        self.files = files
        self._lock = threading.Lock()
        self._stamp = files.stamp()
        self._reload_requested = False
        self.reloads = 0  # configurations loaded after the first (for logs and tests)

    def request_reload(self) -> None:
        """The next handshake loads the files again (SIGHUP)."""
        with self._lock:
            self._reload_requested = True

    def reloaded(self, load: Callable[[], T]) -> T | None:
        """``load()`` when the files changed or a reload was asked, else None (keep the current one)."""
        with self._lock:
            stamp = self.files.stamp()
            if stamp == self._stamp and not self._reload_requested:
                return None
            try:
                loaded = load()
            except TlsError as exc:  # a half-written file: keep serving the old certificate
                log.warning("TLS certificate not reloaded: %s", exc)
                return None
            self._stamp, self._reload_requested = stamp, False
            self.reloads += 1
            log.info("TLS certificate reloaded from %s", self.files.certificate)
            return loaded


def _check_server_files(files: TlsFiles, client_auth: str) -> None:
    if client_auth not in CLIENT_AUTH_MODES:
        raise TlsError(f"ssl.client.auth: {client_auth!r} is not one of {', '.join(CLIENT_AUTH_MODES)}")
    if files.certificate is None or files.key is None:
        raise TlsError("an SSL listener needs ssl.certificate.location and ssl.key.location")
    if client_auth != "none" and files.truststore is None:
        raise TlsError(f"ssl.client.auth={client_auth} needs ssl.truststore.location (the CA of client certificates)")


class ServerTls:
    """Server credentials of one SSL gRPC listener, re-read from disk when the files change."""

    def __init__(self, files: TlsFiles, client_auth: str):
        _check_server_files(files, client_auth)
        if client_auth == "requested":  # never served as none (what grpc would do) or required
            raise TlsError(f"ssl.client.auth=requested on a gRPC listener: {GRPC_REQUESTED_UNSUPPORTED}")
        self.files = files
        self.client_auth = client_auth
        self._reloader = CertificateReloader(files)
        self._initial = self._configuration()

    @property
    def reloads(self) -> int:
        return self._reloader.reloads

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        chain, key, ca = self.files.read()
        assert chain is not None and key is not None, "checked in __init__"
        return grpc.ssl_server_certificate_configuration(
            [(key, chain)], root_certificates=ca if self.client_auth != "none" else None
        )

    def request_reload(self) -> None:
        """The next handshake loads the files again (SIGHUP)."""
        self._reloader.request_reload()

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by grpc before each handshake: None keeps the current certificate."""
        return self._reloader.reloaded(self._configuration)

    def credentials(self) -> grpc.ServerCredentials:
        # "none" or "required": "requested" is refused in __init__ (GRPC_REQUESTED_UNSUPPORTED).
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self._fetch, require_client_authentication=self.client_auth == "required"
        )


_VERIFY_MODES = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


class SocketServerTls:
    """TLS of one SSL Kafka listener (asyncio's ssl, where ``ssl.client.auth=requested`` exists:
    a client certificate is asked for and verified when one is sent, CERT_OPTIONAL). The same files
    and reload rule as ``ServerTls``: the context handed to the server picks, at every ClientHello
    (its SNI callback, which OpenSSL calls with or without a server name), the context built from
    the files as they are now, so new connections get a replaced certificate or CA bundle."""

    def __init__(self, files: TlsFiles, client_auth: str, mapper: PrincipalMapper | None = None):
        _check_server_files(files, client_auth)
        self.files = files
        self.client_auth = client_auth
        self._mapper = mapper or PrincipalMapper()  # ssl.principal.mapping.rules
        self._reloader = CertificateReloader(files)
        self._current = self._context()

    @property
    def reloads(self) -> int:
        return self._reloader.reloads

    def request_reload(self) -> None:
        self._reloader.request_reload()

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.files.certificate), str(self.files.key))
            if self.client_auth != "none":
                context.load_verify_locations(cafile=str(self.files.truststore))
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"{self.files.certificate} / {self.files.key}: {exc}") from None
        # Swapping a connection's context (below) keeps the first context's verify mode, so every
        # context has the same one.
        context.verify_mode = _VERIFY_MODES[self.client_auth]
        context.sni_callback = self._on_client_hello
        return context

    def _on_client_hello(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        fresh = self._reloader.reloaded(self._context)
        if fresh is not None:
            self._current = fresh
        if connection.context is not self._current:
            connection.context = self._current  # the certificate and CA bundle loaded last

    def server_context(self) -> ssl.SSLContext:
        """For ``asyncio.start_server(ssl=...)``."""
        return self._current

    def peer_principal(self, ssl_object: ssl.SSLObject | None) -> str:
        """The principal of a connection's client certificate (``User:<name>`` by the mapping
        rules, as PeerAuthenticator names a gRPC caller's), User:ANONYMOUS without one."""
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return ANONYMOUS
        return certificate_principal(read_certificate(ssl.DER_cert_to_PEM_cert(der).encode()), self._mapper)


@dataclass(frozen=True)
class ClientSecurity:
    """How a client or a node connects: Kafka's ``security.protocol``, ``ssl.*`` and ``sasl.*``
    client settings. A SASL_* client logs in once (``login``, shared by all its channels) and sends
    the session token with every call (raftlog/sasl_login.py)."""

    protocol: str = PLAINTEXT
    files: TlsFiles = TlsFiles(None, None, None)
    sasl: SaslCredentials | None = None
    login: SessionLogin | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in SECURITY_PROTOCOLS:
            raise TlsError(f"security.protocol: {self.protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}")
        if (self.files.certificate is None) != (self.files.key is None):
            raise TlsError("ssl.certificate.location and ssl.key.location go together")
        if self.protocol in SASL_PROTOCOLS:
            if self.sasl is None or not self.sasl.username or not self.sasl.password:
                raise TlsError(f"security.protocol={self.protocol} needs sasl.username and sasl.password")
            if self.sasl.mechanism not in GRPC_SASL_MECHANISMS:
                raise TlsError(
                    f"sasl.mechanism: {self.sasl.mechanism!r} is not one of {', '.join(GRPC_SASL_MECHANISMS)}"
                )
            if self.login is None:
                object.__setattr__(self, "login", SessionLogin(self.sasl, self._plain_channel))
        elif self.sasl is not None:
            # A password is never sent without the operator saying how: SASL_SSL (over TLS), or
            # SASL_PLAINTEXT, which says by its name that it is not encrypted.
            raise TlsError(
                f"sasl.username/sasl.password given with security.protocol={self.protocol}: "
                "use SASL_SSL (or SASL_PLAINTEXT to send them without TLS)"
            )

    @property
    def tls(self) -> bool:
        return self.protocol in TLS_PROTOCOLS

    @property
    def transport(self) -> str:
        """PLAINTEXT or SSL: what a protocol probe sees."""
        return SSL if self.tls else PLAINTEXT

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Read from disk each time, so a new channel uses the files as they are now."""
        assert self.tls, "a PLAINTEXT client has no channel credentials"
        chain, key, ca = self.files.read()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=chain)

    def _plain_channel(self, address: str) -> grpc.Channel:
        """A channel without the token interceptor, for the login itself."""
        if self.tls:
            return grpc.secure_channel(address, self.channel_credentials())
        return grpc.insecure_channel(address)

    @classmethod
    def from_settings(
        cls,
        security_protocol: str | None = None,
        ssl_cafile: str | Path | None = None,
        ssl_certfile: str | Path | None = None,
        ssl_keyfile: str | Path | None = None,
        sasl_mechanism: str | None = None,
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
    ) -> ClientSecurity:
        """kafka-python's keyword names; SSL is implied by any ssl_* file."""
        any_file = any(f is not None for f in (ssl_cafile, ssl_certfile, ssl_keyfile))
        protocol = (security_protocol or (SSL if any_file else PLAINTEXT)).upper()
        files = TlsFiles(*(Path(f) if f is not None else None for f in (ssl_certfile, ssl_keyfile, ssl_cafile)))
        if protocol in (PLAINTEXT, SASL_PLAINTEXT) and any_file:
            raise TlsError(f"ssl_* files given with security_protocol={protocol}")
        sasl = None
        if sasl_plain_username is not None or sasl_plain_password is not None:
            sasl = SaslCredentials(
                (sasl_mechanism or "SCRAM-SHA-256").upper(), sasl_plain_username or "", sasl_plain_password or ""
            )
        return cls(protocol, files, sasl)

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> ClientSecurity:
        """A ``client.properties`` file's keys (Kafka's names)."""
        return cls.from_settings(**client_kwargs(properties))


CLIENT_PROPERTY_KEYS = (
    "security.protocol",
    "ssl.truststore.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "sasl.mechanism",
    "sasl.username",
    "sasl.password",
    "sasl.jaas.config",
)

_JAAS = re.compile(
    r"\s*org\.apache\.kafka\.common\.security\.(scram\.ScramLoginModule|plain\.PlainLoginModule)\s+required"
    r"((?:\s+\w+\s*=\s*\"(?:[^\"\\]|\\.)*\")*)\s*;?\s*"
)
_JAAS_OPTION = re.compile(r"(\w+)\s*=\s*\"((?:[^\"\\]|\\.)*)\"")


def parse_jaas_config(text: str) -> tuple[str, str]:
    """(username, password) of Kafka's ``sasl.jaas.config`` with ScramLoginModule (PlainLoginModule
    is read too, for the Kafka listener's clients; gRPC logins are SCRAM whatever it says)."""
    match = _JAAS.fullmatch(text)
    if match is None:
        raise TlsError(
            "sasl.jaas.config: expected org.apache.kafka.common.security.scram.ScramLoginModule required "
            'username="..." password="...";'
        )
    options = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _JAAS_OPTION.findall(match.group(2))}
    if "username" not in options or "password" not in options:
        raise TlsError('sasl.jaas.config needs username="..." and password="..."')
    return options["username"], options["password"]


def client_kwargs(properties: Mapping[str, str]) -> dict[str, str | None]:
    """Kafka client property names -> the keyword arguments of Admin, Producer and Consumer."""
    username, password = properties.get("sasl.username"), properties.get("sasl.password")
    jaas = properties.get("sasl.jaas.config")
    if jaas is not None:
        if username is not None or password is not None:
            raise TlsError("give sasl.jaas.config or sasl.username/sasl.password, not both")
        username, password = parse_jaas_config(jaas)
    return {
        "security_protocol": properties.get("security.protocol"),
        "ssl_cafile": properties.get("ssl.truststore.location"),
        "ssl_certfile": properties.get("ssl.certificate.location"),
        "ssl_keyfile": properties.get("ssl.key.location"),
        "sasl_mechanism": properties.get("sasl.mechanism"),
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }


def read_properties(path: str | Path) -> dict[str, str]:
    """A Java-style properties file: ``key=value`` lines, ``#`` comments; unknown keys are an error."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TlsError(f"--command-config {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise TlsError(f"{path}:{number}: expected key=value, got {line!r}")
        key = key.strip()
        if key not in CLIENT_PROPERTY_KEYS:
            raise TlsError(f"{path}:{number}: unknown key {key!r} (known: {', '.join(CLIENT_PROPERTY_KEYS)})")
        values[key] = value.strip()
    return values


# -- who is calling ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """What raftlog reads from a peer's certificate."""

    distinguished_name: str
    node_ids: frozenset[int]


@functools.lru_cache(maxsize=1024)
def read_certificate(pem: bytes) -> Certificate:
    cert = x509.load_pem_x509_certificate(pem)
    return Certificate(cert.subject.rfc4514_string(), certificate_node_ids(cert))


def certificate_node_ids(cert: x509.Certificate) -> frozenset[int]:
    """The node ids a certificate names: SAN URIs raftlog:node:<id>, else a CN node-<id>."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    ids = {int(uri[len(NODE_URI_PREFIX) :]) for uri in uris if re.fullmatch(r"raftlog:node:\d+", uri)}
    if ids:
        return frozenset(ids)
    common_names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    matches = [NODE_CN_PATTERN.fullmatch(str(cn.value)) for cn in common_names]
    return frozenset(int(m.group(1)) for m in matches if m is not None)


@dataclass(frozen=True)
class PeerIdentity:
    """Who is on the other end of a call: the principal (``User:<name>``, ``User:ANONYMOUS`` without
    a certificate) and the node ids its certificate names (empty for clients)."""

    principal: str
    node_ids: frozenset[int]
    certificate: Certificate | None


ANONYMOUS_PEER = PeerIdentity(ANONYMOUS, frozenset(), None)


def certificate_principal(cert: Certificate, mapper: PrincipalMapper) -> str:
    name = mapper.name(cert.distinguished_name)
    return ANONYMOUS if name is None else f"User:{name}"


class PeerAuthenticator:
    """Reads a call's peer certificate. ``require_node_certificate`` is set on listeners that carry
    internal services over SSL: there a call naming a node id must come from that node's certificate.
    On a PLAINTEXT listener nothing can be checked (a development cluster)."""

    def __init__(self, mapper: PrincipalMapper, require_node_certificate: bool):
        self.mapper = mapper
        self.require_node_certificate = require_node_certificate

    def identity(self, context) -> PeerIdentity:
        """The principal of a call: the hook for authorization (ACLs) and SASL principals later."""
        auth = context.auth_context() or {}
        pems = auth.get("x509_pem_cert") or []
        if not pems:
            return ANONYMOUS_PEER
        cert = read_certificate(bytes(pems[0]))
        return PeerIdentity(certificate_principal(cert, self.mapper), cert.node_ids, cert)

    def check_node(self, context, node_id: int, what: str) -> None:
        """Raises CLUSTER_AUTHORIZATION_FAILED unless the caller's certificate names ``node_id``."""
        if not self.require_node_certificate:
            return
        identity = self.identity(context)
        if node_id not in identity.node_ids:
            named = ",".join(str(i) for i in sorted(identity.node_ids)) or "no node"
            raise RaftlogError(
                Errors.CLUSTER_AUTHORIZATION_FAILED,
                f"{what} claims to come from node {node_id}, but the caller's certificate "
                f"({identity.principal}) names {named}",
            )


# -- a clear error for a client that speaks the wrong protocol -------------------------------

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
PROBE_TIMEOUT_S = 1.0


def probe_protocol(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """PLAINTEXT if the server at host:port answers an HTTP/2 preface with a SETTINGS frame, SSL if it
    completes (or alerts in) a TLS handshake, None if it cannot be told (down, or something else)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
            sock.sendall(_H2_PREFACE)
            head = sock.recv(9)
            if len(head) == 9 and head[3] == 0x04:
                return PLAINTEXT
    except (OSError, ValueError):
        pass
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
            with context.wrap_socket(sock, server_hostname=host or None):
                return SSL
    except ssl.SSLError as exc:
        return SSL if "ALERT" in str(exc).upper() else None
    except (OSError, ValueError):
        return None


def mismatch_error(address: str, security: ClientSecurity, spoken: str | None) -> RaftlogError | None:
    """SSL_AUTHENTICATION_FAILED naming the fix when the server at ``address`` speaks (``spoken``,
    from ``probe_protocol``) the other protocol than this client, else None."""
    if spoken == SSL and not security.tls:
        return RaftlogError(
            Errors.SSL_AUTHENTICATION_FAILED,
            f"TLS handshake failed: the server at {address} speaks TLS; set security.protocol=SSL "
            "and ssl.truststore.location (CLI: --command-config FILE; Python: security_protocol='SSL', ssl_cafile=...)",
        )
    if spoken == PLAINTEXT and security.tls:
        return RaftlogError(
            Errors.SSL_AUTHENTICATION_FAILED,
            f"TLS handshake failed: the server at {address} speaks plaintext; set security.protocol=PLAINTEXT",
        )
    return None


class ProtocolCheck:
    """Probes a server once a connection to it failed; remembers servers found to speak this
    client's protocol (their failures are something else: down, overloaded), so a client retrying
    a down broker does not probe it on every attempt once it has answered."""

    def __init__(self, security: ClientSecurity):
        self.security = security
        self._matching: set[str] = set()
        self._lock = threading.Lock()

    def after_failure(self, address: str) -> RaftlogError | None:
        with self._lock:
            if address in self._matching:
                return None
        spoken = probe_protocol(address)
        if spoken == self.security.transport:
            with self._lock:
                self._matching.add(address)
            return None
        return mismatch_error(address, self.security, spoken)
