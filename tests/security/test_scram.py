"""raftlog/scram.py against RFC 7677's SCRAM-SHA-256 example, and the tokens made from credentials."""

import base64

import pytest

from raftlog import scram

# RFC 7677, section 3 (user "user", password "pencil").
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE_PART = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_credential() -> scram.ScramCredential:
    return scram.make_credential("SCRAM-SHA-256", "pencil", 4096, SALT)


def test_client_side_matches_rfc_7677():
    client = scram.ClientExchange("SCRAM-SHA-256", "user", "pencil", nonce=CLIENT_NONCE)
    assert client.first() == CLIENT_FIRST
    assert client.final(SERVER_FIRST) == CLIENT_FINAL
    client.verify(SERVER_FINAL)  # the server's signature checks out
    with pytest.raises(scram.ScramError, match="signature"):
        client.verify(b"v=" + base64.b64encode(b"x" * 32))


def test_server_side_matches_rfc_7677():
    server = scram.ServerExchange("SCRAM-SHA-256", nonce=SERVER_NONCE_PART)
    assert server.first(CLIENT_FIRST) == "user"
    assert server.respond(rfc_credential()) == SERVER_FIRST
    assert server.final(CLIENT_FINAL) == SERVER_FINAL


def test_wrong_password_is_refused_by_the_server():
    client = scram.ClientExchange("SCRAM-SHA-256", "user", "pencil2", nonce=CLIENT_NONCE)
    server = scram.ServerExchange("SCRAM-SHA-256", nonce=SERVER_NONCE_PART)
    server.first(client.first())
    with pytest.raises(scram.ScramError, match="wrong password"):
        server.final(client.final(server.respond(rfc_credential())))


@pytest.mark.parametrize("name", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_exchange_round_trip_and_stored_parts(name):
    credential = scram.make_credential(name, "s3cret=,x", 8192)
    scram.check_credential(credential)
    assert "s3cret" not in repr(credential) and len(credential.stored_key) == scram.mechanism(name).digest_bytes
    client = scram.ClientExchange(name, "al,i=ce", "s3cret=,x")
    server = scram.ServerExchange(name)
    assert server.first(client.first()) == "al,i=ce"
    client.verify(server.final(client.final(server.respond(credential))))
    assert scram.password_matches(credential, "s3cret=,x") and not scram.password_matches(credential, "s3cret")


def test_iterations_below_kafkas_minimum_are_refused():
    with pytest.raises(scram.ScramError, match="4096"):
        scram.make_credential("SCRAM-SHA-256", "pw", 4095)
    with pytest.raises(scram.ScramError, match="unknown SCRAM mechanism"):
        scram.make_credential("SCRAM-SHA-1", "pw")


def test_replayed_final_message_of_another_exchange_is_refused():
    credential = rfc_credential()
    server = scram.ServerExchange("SCRAM-SHA-256")  # a fresh server nonce
    server.first(CLIENT_FIRST)
    server.respond(credential)
    with pytest.raises(scram.ScramError, match="nonce"):
        server.final(CLIENT_FINAL)  # recorded from the RFC's exchange


def test_tokens_verify_with_the_credential_they_were_made_from():
    credential = rfc_credential()
    token = scram.make_token("user", credential, expires_at_ms=10_000)
    claim = scram.read_token(token)
    assert claim.username == "user" and claim.mechanism == "SCRAM-SHA-256"
    assert scram.token_valid(claim, credential, now_ms=9_999) is None
    assert "expired" in scram.token_valid(claim, credential, now_ms=10_000)
    changed = scram.make_credential("SCRAM-SHA-256", "pencil", 4096)  # new salt: a new ServerKey
    assert "changed" in scram.token_valid(claim, changed, now_ms=0)
    assert "deleted" in scram.token_valid(claim, None, now_ms=0)
    forged = scram.read_token(token.replace(".v1", "").replace("dXNlcg", "YWRtaW4"))
    assert forged.username == "admin" and scram.token_valid(forged, credential, now_ms=0) is not None


def test_the_nonce_librdkafka_before_2_6_1_sends_is_accepted_and_still_bound_to_the_exchange():
    """librdkafka < 2.6.1 repeats its client nonce in front of the whole nonce in client-final
    (librdkafka#4895; kcat on Debian). Accepted, with the proof computed over what it sent; the
    server's part of the nonce must still be this exchange's."""
    credential = rfc_credential()
    mech = scram.mechanism("SCRAM-SHA-256")

    def buggy_final(server_first: bytes) -> bytes:
        doubled = CLIENT_NONCE + server_first.decode().split(",")[0][2:]
        without_proof = f"c=biws,r={doubled}"
        auth_message = f"{CLIENT_FIRST.decode()[3:]},{server_first.decode()},{without_proof}".encode()
        salted = scram.salted_password(mech, "pencil", SALT, 4096)
        client_key = mech.hmac(salted, b"Client Key")
        proof = bytes(a ^ b for a, b in zip(client_key, mech.hmac(mech.hash(client_key), auth_message)))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    server = scram.ServerExchange("SCRAM-SHA-256", nonce=SERVER_NONCE_PART)
    server.first(CLIENT_FIRST)
    server.final(buggy_final(server.respond(credential)))  # the proof checks out
    other = scram.ServerExchange("SCRAM-SHA-256")  # another exchange: its server nonce differs
    other.first(CLIENT_FIRST)
    other.respond(credential)
    with pytest.raises(scram.ScramError, match="nonce"):
        other.final(buggy_final(SERVER_FIRST))
