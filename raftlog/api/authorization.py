"""The authorization gate of a node's edges (gRPC servicers and the Kafka listener): who calls
(``request_principal``, the peer's host, whether its certificate names a node), what the API needs
(``raftlog.authorizer.required.REQUIRED``, the one table), and the pure authorizer's answer over
the ACL bindings of this node's metadata image.

Every refusal is audited (raftlog/audit.py): one log line (principal, operation, resource, host,
API) and ``raftlog_authorization_denied_total``. Leaving a resource out of a listing (Metadata, ListGroups)
is not a refusal and is not logged, as Kafka's authorizer logs only what it refuses outright.
With ``authorizer.class.name`` empty (the default) every check passes at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from raftlog import audit
from raftlog.api.forwarding import was_forwarded
from raftlog.authorizer.acls import CLUSTER_NAME, Operation, ResourceType
from raftlog.authorizer.authorizer import Authorizer, AuthorizerSettings, Caller, Decision
from raftlog.authorizer.required import REQUIRED, Requirement
from raftlog.errors import RaftlogError
from raftlog.principals import ANONYMOUS, request_principal


def peer_host(context) -> str:
    """The caller's address from gRPC's peer string: "ipv4:127.0.0.1:5555" -> 127.0.0.1, "ipv6:[::1]:5" -> ::1."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.index("]")] if "]" in rest else rest
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return rest or peer


def settings_from(config) -> AuthorizerSettings:
    return AuthorizerSettings(
        enabled=bool(config["authorizer.class.name"]),
        super_users=config.super_users,  # super.users, read once (raftlog/config.py)
        allow_everyone_if_no_acl_found=config["allow.everyone.if.no.acl.found"],
    )


class RequestAuthorizer:
    def __init__(self, settings: AuthorizerSettings, state_machine, authenticator=None, metrics=None):
        self.settings = settings
        self._state_machine = state_machine
        self._authenticator = authenticator  # raftlog.tls.PeerAuthenticator; None: every gRPC caller is anonymous
        self.metrics = metrics
        self._built_for: dict | None = None
        self._authorizer = Authorizer(settings, ())

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    # -- who calls ---------------------------------------------------------------------------

    def caller(self, context) -> Caller:
        """The caller of a gRPC call."""
        if not self.enabled:
            return Caller(ANONYMOUS, "")
        forwarded = was_forwarded(context)
        if self._authenticator is None:
            principal, is_node = ANONYMOUS, False
        else:
            principal = request_principal(context, self._authenticator)
            # Only a forwarded request asks for a node (ClusterAction): the certificate's node ids
            # are read for those alone, not on every produce and fetch.
            is_node = forwarded and bool(self._authenticator.identity(context).node_ids)
        return Caller(principal, peer_host(context), is_node, forwarded)

    # -- deciding ----------------------------------------------------------------------------

    def _current(self) -> Authorizer:
        """The authorizer over this node's current ACL bindings (rebuilt when they change: the
        image replaces its `acls` dict on every change)."""
        acls = self._state_machine.image.acls
        if acls is not self._built_for:
            self._authorizer = Authorizer(self.settings, acls.values())
            self._built_for = acls
        return self._authorizer

    def _decide(self, caller: Caller, requirement: Requirement, name: str) -> Decision:
        authorizer = self._current()
        if requirement.or_cluster:
            decision = authorizer.authorize(caller, requirement.operation, ResourceType.CLUSTER, CLUSTER_NAME)
            if decision.allowed:
                return decision
        decision = authorizer.authorize(caller, requirement.operation, requirement.resource_type, name)
        if not decision.allowed and requirement.or_any_topic is not None:
            alternative = authorizer.authorize_any(caller, requirement.or_any_topic, ResourceType.TOPIC)
            if alternative.allowed:
                return alternative
        return decision

    def _refused(self, caller: Caller, api: str, requirement: Requirement, name: str, decision: Decision) -> None:
        audit.authorization_refused(
            self.metrics,
            caller.principal,
            caller.host,
            requirement.operation.kafka_name,
            f"{requirement.resource_type.kafka_name}:{name}",
            api,
            decision.why,
        )

    def _requirements(self, caller: Caller, api: str) -> tuple[str, tuple[Requirement, ...]]:
        if caller.forwarded:  # the forwarding node authorized its caller; only a node may forward
            api = "Forwarded"
        assert api in REQUIRED, f"API {api} has no entry in raftlog.authorizer.required.REQUIRED"
        return api, REQUIRED[api]

    def check(self, caller: Caller, api: str, topics: Iterable[str] = (), group: str | None = None) -> None:
        """Raises the Kafka error of the first requirement of `api` the caller does not meet, for
        the topics and group it names (the cluster needs no name)."""
        if not self.enabled:
            return
        api, requirements = self._requirements(caller, api)
        for requirement in requirements:
            for name in self._names(requirement.resource_type, topics, group):
                decision = self._decide(caller, requirement, name)
                if not decision.allowed:
                    self._refused(caller, api, requirement, name, decision)
                    raise RaftlogError(
                        requirement.error,
                        f"{caller.principal} may not {requirement.operation.kafka_name} "
                        f"{requirement.resource_type.kafka_name} {name!r}",
                    )

    def denied_topics(self, caller: Caller, api: str, topics: Iterable[str]) -> set[str]:
        """The topics the caller may not do `api` to (each refusal audited), for APIs that answer
        per partition (Produce, Fetch, ListOffsets, OffsetCommit): the others go on."""
        if not self.enabled:
            return set()
        api, requirements = self._requirements(caller, api)
        denied: set[str] = set()
        for requirement in requirements:
            if requirement.resource_type is not ResourceType.TOPIC:
                continue
            for name in dict.fromkeys(topics):
                decision = self._decide(caller, requirement, name)
                if not decision.allowed:
                    self._refused(caller, api, requirement, name, decision)
                    denied.add(name)
        return denied

    def visible(self, caller: Caller, operation: Operation, resource_type: ResourceType, names: Iterable[str]):
        """The names the caller may `operation` (Describe), in order; the rest are left out unlogged."""
        if not self.enabled:
            return list(names)
        authorizer = self._current()
        return [name for name in names if authorizer.authorize(caller, operation, resource_type, name).allowed]

    @staticmethod
    def _names(resource_type: ResourceType, topics: Iterable[str], group: str | None) -> list[str]:
        if resource_type is ResourceType.CLUSTER:
            return [CLUSTER_NAME]
        if resource_type is ResourceType.GROUP:
            return [] if group is None else [group]
        if resource_type is ResourceType.TOPIC:
            return list(dict.fromkeys(topics))
        return []

    # -- audit of ACL changes -----------------------------------------------------------------

    def acls_changed(self, caller: Caller, change: str, bindings) -> None:
        audit.acls_changed(self.metrics, caller.principal, caller.host, change, bindings)


async def serve_authorized_partitions(
    auth: RequestAuthorizer, caller: Caller, api: str, request, serve, response_type, result_type
):
    """Serves a per-partition request (Produce, Fetch, ListOffsets: `request.partitions` with a
    `topic`, answered by `results` of `result_type`) for the topics the caller may use, and answers
    TOPIC_AUTHORIZATION_FAILED for the others, as Kafka does per partition."""
    denied = auth.denied_topics(caller, api, (p.topic for p in request.partitions))
    if not denied:
        return await serve(request)
    operation = next(r.operation.kafka_name for r in REQUIRED[api] if r.resource_type is ResourceType.TOPIC)
    allowed = type(request)()
    allowed.CopyFrom(request)
    del allowed.partitions[:]
    allowed.partitions.extend(p for p in request.partitions if p.topic not in denied)
    answer = await serve(allowed) if allowed.partitions else response_type()
    for p in request.partitions:
        if p.topic in denied:
            answer.results.append(
                result_type(
                    topic=p.topic,
                    partition=p.partition,
                    error_reason="TOPIC_AUTHORIZATION_FAILED",
                    error_message=f"{caller.principal} may not {operation} topic {p.topic!r} ({api})",
                )
            )
    return answer
