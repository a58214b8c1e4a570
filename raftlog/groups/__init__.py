"""Consumer groups (KIP-848): the pure core (assignors, a group's state machine, the records of
``__consumer_offsets``) and the coordinator that serves it."""
