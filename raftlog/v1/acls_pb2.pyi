from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AclResourceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACL_RESOURCE_UNKNOWN: _ClassVar[AclResourceType]
    ACL_RESOURCE_ANY: _ClassVar[AclResourceType]
    TOPIC: _ClassVar[AclResourceType]
    GROUP: _ClassVar[AclResourceType]
    CLUSTER: _ClassVar[AclResourceType]
    TRANSACTIONAL_ID: _ClassVar[AclResourceType]

class AclPatternType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACL_PATTERN_UNKNOWN: _ClassVar[AclPatternType]
    ACL_PATTERN_ANY: _ClassVar[AclPatternType]
    ACL_PATTERN_MATCH: _ClassVar[AclPatternType]
    LITERAL: _ClassVar[AclPatternType]
    PREFIXED: _ClassVar[AclPatternType]

class AclOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACL_OPERATION_UNKNOWN: _ClassVar[AclOperation]
    ACL_OPERATION_ANY: _ClassVar[AclOperation]
    ALL: _ClassVar[AclOperation]
    READ: _ClassVar[AclOperation]
    WRITE: _ClassVar[AclOperation]
    CREATE: _ClassVar[AclOperation]
    DELETE: _ClassVar[AclOperation]
    ALTER: _ClassVar[AclOperation]
    DESCRIBE: _ClassVar[AclOperation]
    CLUSTER_ACTION: _ClassVar[AclOperation]
    DESCRIBE_CONFIGS: _ClassVar[AclOperation]
    ALTER_CONFIGS: _ClassVar[AclOperation]
    IDEMPOTENT_WRITE: _ClassVar[AclOperation]

class AclPermission(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACL_PERMISSION_UNKNOWN: _ClassVar[AclPermission]
    ACL_PERMISSION_ANY: _ClassVar[AclPermission]
    DENY: _ClassVar[AclPermission]
    ALLOW: _ClassVar[AclPermission]
ACL_RESOURCE_UNKNOWN: AclResourceType
ACL_RESOURCE_ANY: AclResourceType
TOPIC: AclResourceType
GROUP: AclResourceType
CLUSTER: AclResourceType
TRANSACTIONAL_ID: AclResourceType
ACL_PATTERN_UNKNOWN: AclPatternType
ACL_PATTERN_ANY: AclPatternType
ACL_PATTERN_MATCH: AclPatternType
LITERAL: AclPatternType
PREFIXED: AclPatternType
ACL_OPERATION_UNKNOWN: AclOperation
ACL_OPERATION_ANY: AclOperation
ALL: AclOperation
READ: AclOperation
WRITE: AclOperation
CREATE: AclOperation
DELETE: AclOperation
ALTER: AclOperation
DESCRIBE: AclOperation
CLUSTER_ACTION: AclOperation
DESCRIBE_CONFIGS: AclOperation
ALTER_CONFIGS: AclOperation
IDEMPOTENT_WRITE: AclOperation
ACL_PERMISSION_UNKNOWN: AclPermission
ACL_PERMISSION_ANY: AclPermission
DENY: AclPermission
ALLOW: AclPermission

class AclBinding(_message.Message):
    __slots__ = ("resource_type", "resource_name", "pattern_type", "principal", "host", "operation", "permission")
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    PATTERN_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    resource_type: AclResourceType
    resource_name: str
    pattern_type: AclPatternType
    principal: str
    host: str
    operation: AclOperation
    permission: AclPermission
    def __init__(self, resource_type: _Optional[_Union[AclResourceType, str]] = ..., resource_name: _Optional[str] = ..., pattern_type: _Optional[_Union[AclPatternType, str]] = ..., principal: _Optional[str] = ..., host: _Optional[str] = ..., operation: _Optional[_Union[AclOperation, str]] = ..., permission: _Optional[_Union[AclPermission, str]] = ...) -> None: ...

class AclBindingFilter(_message.Message):
    __slots__ = ("resource_type", "resource_name", "pattern_type", "principal", "host", "operation", "permission")
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    PATTERN_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    resource_type: AclResourceType
    resource_name: str
    pattern_type: AclPatternType
    principal: str
    host: str
    operation: AclOperation
    permission: AclPermission
    def __init__(self, resource_type: _Optional[_Union[AclResourceType, str]] = ..., resource_name: _Optional[str] = ..., pattern_type: _Optional[_Union[AclPatternType, str]] = ..., principal: _Optional[str] = ..., host: _Optional[str] = ..., operation: _Optional[_Union[AclOperation, str]] = ..., permission: _Optional[_Union[AclPermission, str]] = ...) -> None: ...

class CreateAclsRequest(_message.Message):
    __slots__ = ("bindings",)
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    bindings: _containers.RepeatedCompositeFieldContainer[AclBinding]
    def __init__(self, bindings: _Optional[_Iterable[_Union[AclBinding, _Mapping]]] = ...) -> None: ...

class CreateAclsResponse(_message.Message):
    __slots__ = ("offset", "created")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    offset: int
    created: _containers.RepeatedCompositeFieldContainer[AclBinding]
    def __init__(self, offset: _Optional[int] = ..., created: _Optional[_Iterable[_Union[AclBinding, _Mapping]]] = ...) -> None: ...

class DescribeAclsRequest(_message.Message):
    __slots__ = ("filter", "min_metadata_offset")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_METADATA_OFFSET_FIELD_NUMBER: _ClassVar[int]
    filter: AclBindingFilter
    min_metadata_offset: int
    def __init__(self, filter: _Optional[_Union[AclBindingFilter, _Mapping]] = ..., min_metadata_offset: _Optional[int] = ...) -> None: ...

class DescribeAclsResponse(_message.Message):
    __slots__ = ("bindings",)
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    bindings: _containers.RepeatedCompositeFieldContainer[AclBinding]
    def __init__(self, bindings: _Optional[_Iterable[_Union[AclBinding, _Mapping]]] = ...) -> None: ...

class DeleteAclsRequest(_message.Message):
    __slots__ = ("filters",)
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[AclBindingFilter]
    def __init__(self, filters: _Optional[_Iterable[_Union[AclBindingFilter, _Mapping]]] = ...) -> None: ...

class DeleteAclsResponse(_message.Message):
    __slots__ = ("deleted", "offset")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedCompositeFieldContainer[AclBinding]
    offset: int
    def __init__(self, deleted: _Optional[_Iterable[_Union[AclBinding, _Mapping]]] = ..., offset: _Optional[int] = ...) -> None: ...
