"""AclService: CreateAcls, DescribeAcls, DeleteAcls (kafka-acls' Admin APIs). Changes need Alter on
the cluster and go to the active controller (forwarded when this node is not it), which commits
them as AccessControlEntryRecord / RemoveAccessControlEntryRecord; DescribeAcls needs Describe on
the cluster and reads this node's image. Without an authorizer every call is SECURITY_DISABLED, as
in Kafka. Every change is audited by the node the client called."""

from __future__ import annotations

from raftlog.api.authorization import RequestAuthorizer
from raftlog.api.forwarding import forward_to_controller
from raftlog.api.reads import await_applied
from raftlog.api.status import rpc
from raftlog.authorizer.acls import AclBinding, AclFilter
from raftlog.controller.active import ActiveController
from raftlog.errors import RaftlogError
from raftlog.v1 import acls_pb2, acls_pb2_grpc


class AclServicer(acls_pb2_grpc.AclServiceServicer):
    def __init__(self, driver, controller: ActiveController, peers, authorizer: RequestAuthorizer, metrics=None):
        self._driver = driver
        self._controller = controller
        self._peers = peers
        self._auth = authorizer
        self.metrics = metrics

    def _check_enabled(self) -> None:
        if not self._auth.enabled:
            raise RaftlogError("SECURITY_DISABLED", "no authorizer is configured: set authorizer.class.name")

    @rpc("CreateAcls")
    async def CreateAcls(self, request, context):
        self._check_enabled()
        caller = self._auth.caller(context)
        self._auth.check(caller, "CreateAcls")
        bindings = [AclBinding.from_pb(b) for b in request.bindings]
        for binding in bindings:
            binding.validate()  # here too, so a bad binding is refused before it is forwarded
        answer = await forward_to_controller(
            self._driver, self._peers, acls_pb2_grpc.AclServiceStub, "CreateAcls", request, context
        )
        if answer is None:
            offset, created = await self._controller.create_acls(bindings)
            answer = acls_pb2.CreateAclsResponse(offset=offset, created=[b.to_pb() for b in created])
        if not caller.forwarded:  # audited where the client came in: what the controller added
            self._auth.acls_changed(caller, "added", [AclBinding.from_pb(b) for b in answer.created])
        return answer

    @rpc("DeleteAcls")
    async def DeleteAcls(self, request, context):
        self._check_enabled()
        caller = self._auth.caller(context)
        self._auth.check(caller, "DeleteAcls")
        filters = [AclFilter.from_pb(f) for f in request.filters]
        answer = await forward_to_controller(
            self._driver, self._peers, acls_pb2_grpc.AclServiceStub, "DeleteAcls", request, context
        )
        if answer is None:
            offset, deleted = await self._controller.delete_acls(filters)
            answer = acls_pb2.DeleteAclsResponse(offset=offset, deleted=[b.to_pb() for b in deleted])
        if not caller.forwarded:
            self._auth.acls_changed(caller, "removed", [AclBinding.from_pb(b) for b in answer.deleted])
        return answer

    @rpc("DescribeAcls")
    async def DescribeAcls(self, request, context):
        self._check_enabled()
        self._auth.check(self._auth.caller(context), "DescribeAcls")
        await await_applied(self._driver, request.min_metadata_offset)
        acl_filter = AclFilter.from_pb(request.filter)
        bindings = sorted(
            (b for b in self._controller.image.acls.values() if acl_filter.matches(b)),
            key=lambda b: (b.resource_type.value, b.resource_name, b.pattern_type.value, b.principal, str(b)),
        )
        return acls_pb2.DescribeAclsResponse(bindings=[b.to_pb() for b in bindings])
