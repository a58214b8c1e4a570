"""Kafka-named errors and what a caller does about each: the one home of that policy.

Every error raftlog raises or answers with has a name from Kafka's protocol (``Errors``) and
a policy, in the manner of Kafka's ``Errors`` enum and exception classes:

- ``Policy.RETRY`` (Kafka's RetriableException): the same request may succeed later;
- ``Policy.REFRESH_METADATA`` (InvalidMetadataException, e.g. NOT_LEADER_OR_FOLLOWER):
  the caller's idea of who leads (or of where the controller is) is stale; refresh it, retry;
- ``Policy.FAIL``: retrying will not help; the error goes to the user.

and a scope: ``Scope.CALL`` errors are about the node or the call (a broker down, a timeout,
NOT_CONTROLLER), ``Scope.RESOURCE`` errors about the topic or partition named in the request.
Callers branch on ``error.policy`` (and the admin client on the scope), never on their own
lists of names: making an error retriable is a one-line change here.

This module is pure (no grpc): the gRPC status code of each error lives at the gRPC edge,
``raftlog/api/status.py`` on the server and ``raftlog/channels.py`` on the calling side.
"""

from __future__ import annotations

import enum

REASON_METADATA_KEY = "raftlog-reason"
LEADER_METADATA_KEY = "raftlog-leader"


class Policy(enum.Enum):
    FAIL = "fail"
    RETRY = "retry"
    REFRESH_METADATA = "refresh metadata, then retry"


class Scope(enum.Enum):
    CALL = "call"  # the node answering or the call itself: another node or a later call may do
    RESOURCE = "resource"  # the topic, partition or broker the request names


_FAIL, _RETRY, _REFRESH = Policy.FAIL, Policy.RETRY, Policy.REFRESH_METADATA
_CALL, _RESOURCE = Scope.CALL, Scope.RESOURCE


class Errors(enum.Enum):
    """Kafka error names used by raftlog; each member's value is (policy, scope, meaning).

    The meanings differ, so no two members are aliases of each other (checked by a test).
    """

    # -- the call or the node: retried, on another node where that makes sense -------------
    REQUEST_TIMED_OUT = (_RETRY, _CALL, "no answer in time; the request may still have been carried out")
    NETWORK_EXCEPTION = (_REFRESH, _CALL, "the connection broke with the call in flight")
    BROKER_NOT_AVAILABLE = (_REFRESH, _CALL, "the node could not be reached")
    NOT_CONTROLLER = (_REFRESH, _CALL, "this node is not the active controller; find it and retry")
    COORDINATOR_NOT_AVAILABLE = (_RETRY, _CALL, "the broker cannot reach the controller yet")
    # -- partition routing: the caller's metadata is stale ------------------------------------
    NOT_LEADER_OR_FOLLOWER = (_REFRESH, _RESOURCE, "this broker does not lead (or follow) the partition")
    LEADER_NOT_AVAILABLE = (_REFRESH, _RESOURCE, "the partition has no leader right now")
    UNKNOWN_TOPIC_OR_PARTITION = (_REFRESH, _RESOURCE, "no such topic or partition (or not known here yet)")
    FENCED_LEADER_EPOCH = (_REFRESH, _RESOURCE, "the request's leader epoch is older than the partition's")
    UNKNOWN_LEADER_EPOCH = (_REFRESH, _RESOURCE, "the request's leader epoch is newer than the partition's")
    KAFKA_STORAGE_ERROR = (_REFRESH, _RESOURCE, "the replica's log is not usable on this broker")
    PREFERRED_LEADER_NOT_AVAILABLE = (_REFRESH, _RESOURCE, "the preferred replica is not in the ISR or fenced")
    ELIGIBLE_LEADERS_NOT_AVAILABLE = (_REFRESH, _RESOURCE, "no replica of the partition may lead now")
    # -- the partition cannot take the write yet ----------------------------------------------
    NOT_ENOUGH_REPLICAS = (_RETRY, _RESOURCE, "fewer in-sync replicas than min.insync.replicas")
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = (_RETRY, _RESOURCE, "written, but the ISR shrank below min.insync.replicas")
    # -- the request itself is wrong ----------------------------------------------------------
    INVALID_REQUEST = (_FAIL, _CALL, "the request is malformed or not allowed")
    INVALID_CONFIG = (_FAIL, _RESOURCE, "a config name or value is not valid")
    INVALID_TOPIC_EXCEPTION = (_FAIL, _RESOURCE, "the topic name is not valid")
    INVALID_PARTITIONS = (_FAIL, _RESOURCE, "the partition count is not valid")
    INVALID_REPLICATION_FACTOR = (_FAIL, _RESOURCE, "the replication factor is not valid")
    INVALID_REPLICA_ASSIGNMENT = (_FAIL, _RESOURCE, "the replica list is not valid")
    INVALID_REQUIRED_ACKS = (_FAIL, _CALL, "acks must be -1, 0 or 1")
    INVALID_RECORD = (_FAIL, _RESOURCE, "a record batch breaks the broker's rules (offsets, control batches)")
    CORRUPT_MESSAGE = (_FAIL, _RESOURCE, "bytes that are not a valid record batch (length, CRC, fields)")
    UNSUPPORTED_VERSION = (_FAIL, _RESOURCE, "a record batch magic this broker does not read")
    UNSUPPORTED_COMPRESSION_TYPE = (_FAIL, _RESOURCE, "a compression codec this broker does not read")
    MESSAGE_TOO_LARGE = (_FAIL, _RESOURCE, "the records exceed max.message.bytes")
    OFFSET_OUT_OF_RANGE = (_FAIL, _RESOURCE, "the offset is outside the partition's log")
    TOPIC_ALREADY_EXISTS = (_FAIL, _RESOURCE, "a topic of that name exists")
    REASSIGNMENT_IN_PROGRESS = (_FAIL, _RESOURCE, "the partition is being reassigned already")
    NO_REASSIGNMENT_IN_PROGRESS = (_FAIL, _RESOURCE, "the partition is not being reassigned")
    ELECTION_NOT_NEEDED = (_FAIL, _RESOURCE, "the partition already has the leader asked for")
    INELIGIBLE_REPLICA = (_FAIL, _RESOURCE, "a replica proposed for the ISR is fenced")
    INVALID_UPDATE_VERSION = (_FAIL, _RESOURCE, "the partition epoch of the request is not the current one")
    # -- producers ----------------------------------------------------------------------------
    OUT_OF_ORDER_SEQUENCE_NUMBER = (_FAIL, _RESOURCE, "the batch's sequence does not follow the last one")
    UNKNOWN_PRODUCER_ID = (_FAIL, _RESOURCE, "the partition has no state for this producer id")
    INVALID_PRODUCER_EPOCH = (_FAIL, _RESOURCE, "a newer epoch of this producer id exists")
    # -- consumer groups (KIP-848) -------------------------------------------------------------
    NOT_COORDINATOR = (_REFRESH, _CALL, "this broker is not the group's coordinator; find it and retry")
    COORDINATOR_LOAD_IN_PROGRESS = (_RETRY, _CALL, "the coordinator is still loading the group's state")
    UNKNOWN_MEMBER_ID = (_FAIL, _RESOURCE, "the group has no member of that id; rejoin")
    FENCED_MEMBER_EPOCH = (_FAIL, _RESOURCE, "the member's epoch is not its current one; rejoin")
    STALE_MEMBER_EPOCH = (_FAIL, _RESOURCE, "an offset commit with a member epoch that is not the member's")
    UNRELEASED_INSTANCE_ID = (
        _FAIL,
        _RESOURCE,
        "a live member holds this group.instance.id (it has not left with epoch -2 and its session has not run out)",
    )
    FENCED_INSTANCE_ID = (_FAIL, _RESOURCE, "another member took over this group.instance.id; this one is fenced")
    GROUP_ID_NOT_FOUND = (_FAIL, _RESOURCE, "no group of that id")
    NON_EMPTY_GROUP = (_FAIL, _RESOURCE, "the group has active members")
    INVALID_GROUP_ID = (_FAIL, _RESOURCE, "the group id is not valid")
    INVALID_REGULAR_EXPRESSION = (_FAIL, _RESOURCE, "the subscription pattern is not a valid regular expression")
    UNSUPPORTED_ASSIGNOR = (_FAIL, _RESOURCE, "the group has no assignor of that name")
    # -- classic groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup, raftlog/groups/classic.py) --------
    MEMBER_ID_REQUIRED = (_FAIL, _RESOURCE, "a first JoinGroup (v4+) gets a member id this way; join again with it")
    REBALANCE_IN_PROGRESS = (_FAIL, _RESOURCE, "the classic group is rebalancing; join it again")
    ILLEGAL_GENERATION = (_FAIL, _RESOURCE, "the request's generation is not the classic group's current one")
    INCONSISTENT_GROUP_PROTOCOL = (
        _FAIL,
        _RESOURCE,
        "the member's protocol type or protocols do not match the group's, or the group is of the other type",
    )
    INVALID_SESSION_TIMEOUT = (_FAIL, _RESOURCE, "the session timeout is outside group.min/max.session.timeout.ms")
    GROUP_SUBSCRIBED_TO_TOPIC = (_FAIL, _RESOURCE, "the group's members are subscribed to the topic")
    # -- brokers and the controller -----------------------------------------------------------
    UNKNOWN_BROKER = (_FAIL, _RESOURCE, "no broker of that id is registered")
    STALE_BROKER_EPOCH = (_FAIL, _RESOURCE, "the broker epoch is not the broker's current one")
    DUPLICATE_BROKER_REGISTRATION = (_FAIL, _RESOURCE, "another live incarnation holds this broker id")
    INCONSISTENT_CLUSTER_ID = (_FAIL, _CALL, "the request is for another cluster")
    # -- controller quorum membership (KIP-853) ------------------------------------------------
    DUPLICATE_VOTER = (_FAIL, _RESOURCE, "the node to add is a voter of the metadata quorum already")
    VOTER_NOT_FOUND = (_FAIL, _RESOURCE, "the node to remove is not a voter of the metadata quorum")
    INVALID_VOTER_KEY = (_FAIL, _RESOURCE, "the node cannot be a voter: it is not a controller following the quorum")
    # -- security ------------------------------------------------------------------------------
    CLUSTER_AUTHORIZATION_FAILED = (_FAIL, _CALL, "the caller may not act as the node (or on the cluster) it names")
    TOPIC_AUTHORIZATION_FAILED = (_FAIL, _RESOURCE, "the caller's principal may not do this to the topic (ACLs)")
    GROUP_AUTHORIZATION_FAILED = (_FAIL, _RESOURCE, "the caller's principal may not do this to the group (ACLs)")
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = (
        _FAIL,
        _RESOURCE,
        "the caller's principal may not use the transactional id (ACLs)",
    )
    SECURITY_DISABLED = (_FAIL, _CALL, "no authorizer is configured (authorizer.class.name), so there are no ACLs")
    SSL_AUTHENTICATION_FAILED = (_FAIL, _CALL, "the TLS handshake failed (wrong protocol, untrusted certificate)")
    # -- authentication (SASL) and credentials --------------------------------------------------
    SASL_AUTHENTICATION_FAILED = (_FAIL, _CALL, "no credentials, wrong credentials, or an expired session token")
    UNSUPPORTED_SASL_MECHANISM = (_FAIL, _CALL, "the listener does not offer that SASL mechanism")
    ILLEGAL_SASL_STATE = (_FAIL, _CALL, "a request out of place in the SASL exchange (or before it)")
    RESOURCE_NOT_FOUND = (_FAIL, _RESOURCE, "the user has no credential of that mechanism")
    DUPLICATE_RESOURCE = (_FAIL, _RESOURCE, "one request names the same user and mechanism twice")
    UNACCEPTABLE_CREDENTIAL = (_FAIL, _RESOURCE, "the credential breaks the rules (iterations, salt, key sizes)")
    UNKNOWN_SERVER_ERROR = (_FAIL, _CALL, "an unexpected error on the server")

    def __init__(self, policy: Policy, scope: Scope, meaning: str):
        self.policy = policy
        self.scope = scope
        self.meaning = meaning

    @property
    def retriable(self) -> bool:
        return self.policy is not Policy.FAIL

    @property
    def out_of_order_sequence(self) -> bool:
        """Kafka's OutOfOrderSequenceException and its subclass UnknownProducerIdException: a
        producer with an earlier batch of the partition still unanswered waits for it."""
        return self in (Errors.OUT_OF_ORDER_SEQUENCE_NUMBER, Errors.UNKNOWN_PRODUCER_ID)


class RaftlogError(Exception):
    """An error with its Kafka name (``error``, also as the string ``reason``) and a message.

    ``RaftlogError("NOT_CONTROLLER", "...")`` and ``RaftlogError(Errors.NOT_CONTROLLER, "...")``
    are the same; a name that is not an ``Errors`` member is a bug and raises ValueError.
    """

    def __init__(self, error: Errors | str, message: str, leader_id: int | None = None):
        if not isinstance(error, Errors):
            if error not in Errors.__members__:
                raise ValueError(f"{error!r} is not a raftlog error name (raftlog.errors.Errors)")
            error = Errors[error]
        super().__init__(f"{error.name}: {message}")
        self.error = error
        self.reason = error.name
        self.message = message
        self.leader_id = leader_id

    @classmethod
    def from_reason(cls, reason: str, message: str, leader_id: int | None = None) -> RaftlogError:
        """The error a peer answered with; a name this client does not know (a newer server)
        is UNKNOWN_SERVER_ERROR, which is never retried, with the name kept in the message."""
        if reason in Errors.__members__:
            return cls(Errors[reason], message, leader_id)
        return cls(Errors.UNKNOWN_SERVER_ERROR, f"{reason}: {message}", leader_id)

    @property
    def policy(self) -> Policy:
        return self.error.policy

    @property
    def retriable(self) -> bool:
        return self.error.retriable

    @property
    def refresh_metadata(self) -> bool:
        return self.error.policy is Policy.REFRESH_METADATA
