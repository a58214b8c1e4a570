"""Authorization in Kafka's model: ACL bindings (acls.py), the pure authorizer (authorizer.py) and
the one table of what each API needs (required.py). No I/O: raftlog/api/authorization.py applies it."""
