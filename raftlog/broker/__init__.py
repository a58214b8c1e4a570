"""The broker role of a node: its lifecycle with the controller (and, later, partitions)."""
