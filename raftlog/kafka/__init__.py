"""Kafka's binary protocol, spoken on `kafka.listeners` beside the gRPC servers: a thin edge over the
same broker, controller and coordinator objects the gRPC servicers call (see docs/ARCHITECTURE.md)."""
