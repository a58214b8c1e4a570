"""The active controller (the Raft leader): pure decisions in decisions.py, the asyncio side in active.py."""
