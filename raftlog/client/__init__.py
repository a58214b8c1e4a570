"""Python client for raftlog: Admin now; Producer and Consumer come with the broker."""

from raftlog.client.admin import Admin
from raftlog.errors import RaftlogError

__all__ = ["Admin", "RaftlogError"]
