"""The `raftlog` command line (click)."""
