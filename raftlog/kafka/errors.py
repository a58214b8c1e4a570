"""raftlog's error names -> Kafka's error codes. raftlog's reasons already are Kafka's names
(raftlog/errors.py), so the table is Kafka's own code for each, as kio's ErrorCode has it; the
one name Kafka has no code for is mapped by hand below. Checked at import: every member maps."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from raftlog.errors import Errors, RaftlogError

# raftlog names with no Kafka error code of the same name.
_BY_HAND: dict[Errors, ErrorCode] = {
    # A broker the metadata does not know: what Kafka answers for a node it cannot reach.
    Errors.UNKNOWN_BROKER: ErrorCode.broker_not_available,
    # A TLS handshake fails before any request, so Kafka has no wire code for it (its client raises
    # SslAuthenticationException locally); raftlog's clients name it after a probe. The nearest code.
    Errors.SSL_AUTHENTICATION_FAILED: ErrorCode.sasl_authentication_failed,
}

ERROR_CODES: dict[Errors, ErrorCode] = {
    error: _BY_HAND[error] if error in _BY_HAND else ErrorCode[error.name.lower()] for error in Errors
}
_unmapped = [error.name for error in Errors if error not in ERROR_CODES]
assert not _unmapped, f"raftlog errors without a Kafka error code: {_unmapped}"


def code_of(reason: str) -> ErrorCode:
    """The Kafka error code of a raftlog reason ("" is no error)."""
    if not reason:
        return ErrorCode.none
    return ERROR_CODES[Errors[reason]]


def code_of_error(error: RaftlogError) -> ErrorCode:
    return ERROR_CODES[error.error]
