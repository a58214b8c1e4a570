"""raftlog: a Kafka-style distributed commit log with a built-in Raft metadata quorum."""

__version__ = "0.1.0"
