"""Errors carry their policy; every error has a real gRPC status code; a status travels back to the
same error on the client; the transport's own failures are retriable errors."""

import ast
import asyncio
import pathlib
import re
import subprocess
import sys

import grpc
import pytest

from raftlog.api.status import STATUS_CODES, rpc
from raftlog.channels import error_from_rpc
from raftlog.client.connection import retried_by_admin
from raftlog.errors import REASON_METADATA_KEY, Errors, Policy, RaftlogError

ROOT = pathlib.Path(__file__).resolve().parents[2]
ERROR_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")


class FailedCall(grpc.RpcError):
    def __init__(self, code, details="", metadata=()):
        self._code, self._details, self._metadata = code, details, metadata

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._metadata


@pytest.mark.parametrize(
    "code, error",
    [
        (grpc.StatusCode.UNAVAILABLE, Errors.BROKER_NOT_AVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, Errors.REQUEST_TIMED_OUT),
        (grpc.StatusCode.CANCELLED, Errors.NETWORK_EXCEPTION),
    ],
)
def test_transport_failures_are_retriable_errors(code, error):
    failure = error_from_rpc(FailedCall(code, "boom"))
    assert failure.error is error and failure.retriable and retried_by_admin(failure)


def test_a_stream_broken_in_grpc_core_is_a_retriable_network_error():
    """Seen in the TLS chaos test (kill -9, partition, pause): produce calls ended INTERNAL
    "Internal error from Core", which the producer took for a server error: three records failed."""
    failure = error_from_rpc(FailedCall(grpc.StatusCode.INTERNAL, "Internal error from Core"))
    assert failure.error is Errors.NETWORK_EXCEPTION and failure.retriable


def test_a_server_reason_travels_in_the_trailing_metadata():
    error = error_from_rpc(
        FailedCall(
            grpc.StatusCode.NOT_FOUND,
            "UNKNOWN_TOPIC_OR_PARTITION: no such topic",
            ((REASON_METADATA_KEY, "UNKNOWN_TOPIC_OR_PARTITION"),),
        )
    )
    assert (error.error, error.message) == (Errors.UNKNOWN_TOPIC_OR_PARTITION, "no such topic")
    assert error_from_rpc(FailedCall(grpc.StatusCode.INTERNAL, "?")).error is Errors.UNKNOWN_SERVER_ERROR


def test_a_name_this_client_does_not_know_fails_and_keeps_the_name():
    error = error_from_rpc(
        FailedCall(grpc.StatusCode.UNAVAILABLE, "SOME_NEW_ERROR: later", ((REASON_METADATA_KEY, "SOME_NEW_ERROR"),))
    )
    assert error.error is Errors.UNKNOWN_SERVER_ERROR and not error.retriable
    assert "SOME_NEW_ERROR" in str(error)


def test_an_unknown_name_raised_in_our_own_code_is_a_bug():
    with pytest.raises(ValueError, match="NOT_A_KAFKA_ERROR"):
        RaftlogError("NOT_A_KAFKA_ERROR", "typo")


def test_policies_follow_kafkas_exception_classes():
    assert Errors.NOT_LEADER_OR_FOLLOWER.policy is Policy.REFRESH_METADATA  # InvalidMetadataException
    assert Errors.NETWORK_EXCEPTION.policy is Policy.REFRESH_METADATA  # NetworkException is one too
    assert Errors.REQUEST_TIMED_OUT.policy is Policy.RETRY  # TimeoutException: RetriableException
    assert Errors.NOT_ENOUGH_REPLICAS.policy is Policy.RETRY
    assert Errors.TOPIC_ALREADY_EXISTS.policy is Policy.FAIL
    assert not RaftlogError("INVALID_CONFIG", "x").retriable


def test_the_admin_retries_call_failures_but_not_errors_about_what_it_asked_for():
    assert retried_by_admin(RaftlogError("NOT_CONTROLLER", "elsewhere"))
    assert not retried_by_admin(RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", "no such topic"))
    assert not retried_by_admin(RaftlogError("INVALID_REQUEST", "bad"))


def test_no_two_errors_are_aliases():
    assert len(Errors.__members__) == len(list(Errors))


def test_the_errors_module_does_not_need_grpc():
    code = "import sys, raftlog.errors; assert 'grpc' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _reasons_in_source() -> dict[str, str]:
    """Error names written in the code: RaftlogError(...)/FooError(...) arguments, reason= and
    error_reason= values, reason parameters' defaults and `reason = ...` assignments."""
    found: dict[str, str] = {}

    def constants(node):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and ERROR_NAME.match(sub.value):
                yield sub.value

    for path in [*ROOT.glob("raftlog/**/*.py"), *ROOT.glob("cli/**/*.py"), *ROOT.glob("chaos/**/*.py")]:
        if "/v1/" in str(path):
            continue
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            values = []
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name.endswith("Error") or name in ("from_reason", "__init__"):
                    values += node.args
                values += [k.value for k in node.keywords if k.arg in ("reason", "error_reason")]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "") for t in targets}
                if names & {"reason", "error_reason"} and node.value is not None:
                    values.append(node.value)
            elif isinstance(node, ast.FunctionDef):
                params = node.args.args[len(node.args.args) - len(node.args.defaults) :]
                values += [d for p, d in zip(params, node.args.defaults) if p.arg == "reason"]
            for value in values:
                for constant in constants(value):
                    found.setdefault(constant, where)
    return found


def test_every_reason_raised_anywhere_has_a_status_code_other_than_unknown():
    reasons = _reasons_in_source()
    assert len(reasons) >= 30, f"the scan found too few reasons to be working: {sorted(reasons)}"
    unknown = {r: where for r, where in reasons.items() if r not in Errors.__members__}
    assert not unknown, f"names that are not raftlog.errors.Errors members: {unknown}"
    for error in Errors:
        assert STATUS_CODES[error] not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK), error


class _FailingServicer:
    """Answers every call with the error named in the request."""

    @rpc("Fail")
    async def fail(self, request: bytes, context):
        raise RaftlogError(request.decode(), "as asked", leader_id=7)


def test_each_error_round_trips_from_the_server_to_the_same_error_on_the_client():
    async def scenario():
        servicer = _FailingServicer()
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(servicer.fail)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Errors", {"Fail": handler}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/test.Errors/Fail")
                for error in Errors:
                    with pytest.raises(grpc.RpcError) as info:
                        await call(error.name.encode(), timeout=5)
                    assert info.value.code() == STATUS_CODES[error], error
                    back = error_from_rpc(info.value)
                    assert (back.error, back.message, back.leader_id) == (error, "as asked", 7)
                    assert back.policy is error.policy
        finally:
            await server.stop(None)

    asyncio.run(scenario())
