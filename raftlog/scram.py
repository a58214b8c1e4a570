"""SCRAM (RFC 5802, SHA-256 and SHA-512 as RFC 7677 and Kafka have them): credentials and the two
sides of an exchange, and the session tokens a node gives after one. Pure: no grpc, no I/O.

A stored credential is what Kafka's UserScramCredentialRecord holds: salt, iterations, StoredKey
and ServerKey. Neither the password nor the SaltedPassword is kept, so a copy of the metadata does
not let anyone log in as the user (StoredKey is a hash of ClientKey; the client proves it knows
ClientKey). Passwords are taken as UTF-8 bytes without SASLprep, as Kafka and librdkafka do, so a
credential made here works from any Kafka client.

Session tokens (gRPC, raftlog/authentication.py): after an exchange the node gives the client a
token ``v1.<user>.<mechanism>.<expiry ms>.<nonce>.<mac>``, the MAC keyed by a key derived from the
user's ServerKey. Any node holding the credential verifies it with one HMAC and no state; changing
or deleting the credential invalidates every token made from it. A token is a bearer secret:
it is sent inside TLS (SASL_SSL); on SASL_PLAINTEXT anyone who sees it can use it until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

MIN_ITERATIONS = 4096  # Kafka's minimum and default (RFC 7677 recommends at least 4096)
MAX_ITERATIONS = 16384  # Kafka's maximum
DEFAULT_ITERATIONS = 4096
MIN_SALT_BYTES = 16
NONCE_BYTES = 24


class ScramError(ValueError):
    """An exchange that cannot go on: a malformed message or a wrong proof. The message is for logs;
    a client is told only that authentication failed."""


@dataclass(frozen=True, slots=True)
class Mechanism:
    name: str  # SCRAM-SHA-256 or SCRAM-SHA-512
    hash_name: str  # hashlib's name
    digest_bytes: int

    def hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash_name).digest()

    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.hash_name, data).digest()


SCRAM_SHA_256 = Mechanism("SCRAM-SHA-256", "sha256", 32)
SCRAM_SHA_512 = Mechanism("SCRAM-SHA-512", "sha512", 64)
MECHANISMS: dict[str, Mechanism] = {m.name: m for m in (SCRAM_SHA_256, SCRAM_SHA_512)}


def mechanism(name: str) -> Mechanism:
    found = MECHANISMS.get(name.upper())
    if found is None:
        raise ScramError(f"unknown SCRAM mechanism {name!r} (known: {', '.join(MECHANISMS)})")
    return found


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """What a node stores for one user and mechanism; never the password."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __repr__(self) -> str:  # a credential in a log line shows no key material
        return f"ScramCredential({self.mechanism}, iterations={self.iterations})"


def salted_password(mech: Mechanism, password: str, salt: bytes, iterations: int) -> bytes:
    """Hi(password, salt, i) of RFC 5802: PBKDF2 with HMAC of the mechanism's hash."""
    return hashlib.pbkdf2_hmac(mech.hash_name, password.encode("utf-8"), salt, iterations)


def credential_from_salted(mech: Mechanism, salted: bytes, salt: bytes, iterations: int) -> ScramCredential:
    client_key = mech.hmac(salted, b"Client Key")
    return ScramCredential(mech.name, salt, iterations, mech.hash(client_key), mech.hmac(salted, b"Server Key"))


def make_credential(
    mechanism_name: str, password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> ScramCredential:
    """A new credential (a fresh random salt unless one is given)."""
    mech = mechanism(mechanism_name)
    check_iterations(iterations)
    if not password:
        raise ScramError("the password is empty")
    salt = secrets.token_bytes(32) if salt is None else salt
    return credential_from_salted(mech, salted_password(mech, password, salt, iterations), salt, iterations)


def check_iterations(iterations: int) -> None:
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ScramError(f"iterations must be {MIN_ITERATIONS}..{MAX_ITERATIONS}, got {iterations}")


def check_credential(credential: ScramCredential) -> None:
    """Raises ScramError unless the stored parts fit the mechanism (what a node accepts to store)."""
    mech = mechanism(credential.mechanism)
    check_iterations(credential.iterations)
    if len(credential.salt) < MIN_SALT_BYTES:
        raise ScramError(f"the salt must be at least {MIN_SALT_BYTES} bytes, got {len(credential.salt)}")
    for what, key in (("stored key", credential.stored_key), ("server key", credential.server_key)):
        if len(key) != mech.digest_bytes:
            raise ScramError(f"the {what} of {mech.name} is {mech.digest_bytes} bytes, got {len(key)}")


def password_matches(credential: ScramCredential, password: str) -> bool:
    """SASL/PLAIN against a SCRAM credential: derive the keys from the password and compare."""
    mech = mechanism(credential.mechanism)
    salted = salted_password(mech, password, credential.salt, credential.iterations)
    derived = credential_from_salted(mech, salted, credential.salt, credential.iterations)
    return hmac.compare_digest(derived.stored_key, credential.stored_key)


# -- messages -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ScramError(f"{what} is not base64") from None


def escape_username(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def unescape_username(text: str) -> str:
    if "=" in text.replace("=3D", "").replace("=2C", ""):
        raise ScramError("the user name has a bad escape")
    return text.replace("=2C", ",").replace("=3D", "=")


def _attributes(message: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for part in message.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise ScramError(f"{what}: {part!r} is not an attribute")
        pairs.append((key, value))
    return pairs


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _nonce() -> str:
    return base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode("ascii").replace("=", "")


class ClientExchange:
    """The client's side: first() -> client-first-message; final(server-first) -> client-final;
    verify(server-final) checks that the server holds the credential."""

    def __init__(self, mechanism_name: str, username: str, password: str, nonce: str | None = None):
        self.mech = mechanism(mechanism_name)
        self.username = username
        self.password = password
        self.nonce = nonce or _nonce()
        self._first_bare = f"n={escape_username(username)},r={self.nonce}"
        self._server_signature: bytes | None = None

    def first(self) -> bytes:
        return ("n,," + self._first_bare).encode("utf-8")

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode("utf-8", errors="replace")
        attributes = dict(_attributes(text, "server-first-message"))
        if "e" in attributes:
            raise ScramError(f"the server refused: {attributes['e']}")
        nonce, salt_b64, iterations_text = attributes.get("r", ""), attributes.get("s", ""), attributes.get("i", "")
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise ScramError("the server's nonce does not extend ours")
        if not iterations_text.isdigit():
            raise ScramError("server-first-message: iterations are not a number")
        iterations = int(iterations_text)
        check_iterations(iterations)
        salt = _unb64(salt_b64, "salt")
        salted = salted_password(self.mech, self.password, salt, iterations)
        client_key = self.mech.hmac(salted, b"Client Key")
        without_proof = f"c={_b64(b'n,,')},r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        signature = self.mech.hmac(self.mech.hash(client_key), auth_message)
        self._server_signature = self.mech.hmac(self.mech.hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(_xor(client_key, signature))}".encode()

    def verify(self, server_final: bytes) -> None:
        assert self._server_signature is not None, "verify() comes after final()"
        attributes = dict(_attributes(server_final.decode("utf-8", errors="replace"), "server-final-message"))
        if "e" in attributes:
            raise ScramError(f"the server refused: {attributes['e']}")
        if not hmac.compare_digest(_unb64(attributes.get("v", ""), "verifier"), self._server_signature):
            raise ScramError("the server's signature is wrong: it does not hold this user's credential")


class ServerExchange:
    """The server's side. first(client-first) gives the user name; respond(credential) gives the
    server-first-message (a credential made up by the caller for an unknown user, so an attacker
    cannot tell which users exist); final(client-final) checks the proof and gives server-final."""

    def __init__(self, mechanism_name: str, nonce: str | None = None):
        self.mech = mechanism(mechanism_name)
        self._nonce_part = nonce or _nonce()
        self.username: str | None = None
        self._client_first_bare = ""
        self._gs2_header = ""
        self._server_first = ""
        self._client_nonce = ""
        self._nonce = ""
        self._credential: ScramCredential | None = None

    def first(self, client_first: bytes) -> str:
        """The user name the client-first-message names."""
        try:
            text = client_first.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramError("client-first-message is not UTF-8") from None
        cbind, sep1, rest = text.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if not (sep1 and sep2) or cbind not in ("n", "y"):
            raise ScramError("client-first-message: channel binding is not supported (expected n,, or y,,)")
        attributes = _attributes(bare, "client-first-message")
        if len(attributes) < 2 or attributes[0][0] != "n" or attributes[1][0] != "r" or not attributes[1][1]:
            raise ScramError("client-first-message: expected n=<user>,r=<nonce>")
        if any(key == "m" for key, _ in attributes):
            raise ScramError("client-first-message: mandatory extensions are not supported")
        username = unescape_username(attributes[0][1])
        if authzid and authzid != f"a={attributes[0][1]}":
            raise ScramError("client-first-message: an authorization id other than the user is not supported")
        self.username = username
        self._gs2_header = f"{cbind},{authzid},"
        self._client_first_bare = bare
        self._client_nonce = attributes[1][1]
        self._nonce = self._client_nonce + self._nonce_part
        return username

    def respond(self, credential: ScramCredential) -> bytes:
        assert self.username is not None, "respond() comes after first()"
        assert credential.mechanism == self.mech.name, f"a {credential.mechanism} credential for {self.mech.name}"
        self._credential = credential
        self._server_first = f"r={self._nonce},s={_b64(credential.salt)},i={credential.iterations}"
        return self._server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        """server-final-message; raises ScramError when the proof is wrong."""
        credential = self._credential
        assert credential is not None, "final() comes after respond()"
        text = client_final.decode("utf-8", errors="replace")
        attributes = _attributes(text, "client-final-message")
        values = dict(attributes)
        if attributes[-1][0] != "p" or "c" not in values or "r" not in values:
            raise ScramError("client-final-message: expected c=...,r=...,p=...")
        if _unb64(values["c"], "channel binding") != self._gs2_header.encode():
            raise ScramError("client-final-message: the channel binding differs from the first message")
        # librdkafka before 2.6.1 (Debian's and Ubuntu's, kcat's) sends its own nonce again in front
        # of the whole nonce (librdkafka#4895). That form is accepted too: it still carries this
        # exchange's server nonce, and the proof is computed over it, so a message of another
        # exchange is refused as before.
        if values["r"] not in (self._nonce, self._client_nonce + self._nonce):
            raise ScramError("client-final-message: the nonce is not this exchange's")
        without_proof = text[: text.rindex(",p=")]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = self.mech.hmac(credential.stored_key, auth_message)
        proof = _unb64(values["p"], "proof")
        if len(proof) != self.mech.digest_bytes:
            raise ScramError("client-final-message: the proof has the wrong length")
        client_key = _xor(proof, signature)
        if not hmac.compare_digest(self.mech.hash(client_key), credential.stored_key):
            raise ScramError("the client's proof is wrong (wrong password)")
        return f"v={_b64(self.mech.hmac(credential.server_key, auth_message))}".encode()


def decoy_credential(mechanism_name: str, username: str, secret: bytes) -> ScramCredential:
    """A credential for a user that does not exist, the same on every ask (salt from the user name
    and a node secret), so the server-first-message does not tell that the user is unknown."""
    mech = mechanism(mechanism_name)
    salt = hmac.new(secret, f"{mech.name}\x00{username}".encode(), "sha256").digest()
    junk = mech.hmac(secret, salt)
    return ScramCredential(mech.name, salt, DEFAULT_ITERATIONS, junk, junk)


# -- session tokens (gRPC) ----------------------------------------------------------------------

TOKEN_VERSION = "v1"


def _token_key(credential: ScramCredential) -> bytes:
    mech = mechanism(credential.mechanism)
    return mech.hmac(credential.server_key, b"raftlog session token")


def _token_mac(credential: ScramCredential, body: str) -> str:
    mac = hmac.new(_token_key(credential), body.encode(), "sha256").digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def make_token(username: str, credential: ScramCredential, expires_at_ms: int) -> str:
    user = base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")
    body = (
        f"{TOKEN_VERSION}.{user}.{credential.mechanism}.{expires_at_ms}.{_nonce().replace('/', '_').replace('+', '-')}"
    )
    return f"{body}.{_token_mac(credential, body)}"


@dataclass(frozen=True, slots=True)
class TokenClaim:
    """What a token says before it is verified."""

    username: str
    mechanism: str
    expires_at_ms: int
    body: str
    mac: str


def read_token(token: str) -> TokenClaim:
    parts = token.split(".")
    if len(parts) != 6 or parts[0] != TOKEN_VERSION or not parts[3].isdigit():
        raise ScramError("not a raftlog session token")
    try:
        username = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ScramError("the token's user name does not decode") from None
    return TokenClaim(username, parts[2], int(parts[3]), ".".join(parts[:5]), parts[5])


def token_valid(claim: TokenClaim, credential: ScramCredential | None, now_ms: int) -> str | None:
    """None if the token is good now, else why not (for the log)."""
    if credential is None or credential.mechanism != claim.mechanism:
        return f"no {claim.mechanism} credential for user {claim.username!r} (deleted?)"
    if not hmac.compare_digest(_token_mac(credential, claim.body), claim.mac):
        return "the token was not made from the user's current credential (changed?)"
    if now_ms >= claim.expires_at_ms:
        return "the token has expired"
    return None
