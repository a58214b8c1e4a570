"""Metadata records and the MetadataImage every node applies from the committed Raft log."""
