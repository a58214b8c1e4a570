"""Raft: the pure core (core.py), its simulation (sim.py), RocksDB storage, the asyncio driver and transport."""

from raftlog.raft.driver import DriverSettings, RaftDriver, RaftStatus, StateMachine
from raftlog.raft.messages import NotLeaderError

__all__ = ["DriverSettings", "NotLeaderError", "RaftDriver", "RaftStatus", "StateMachine"]
