"""The Raft state machine of every node: committed entries -> MetadataImage."""

from __future__ import annotations

from collections.abc import Callable

from raftlog.metadata.image import MetadataImage
from raftlog.metadata.records import decode_batch


class MetadataDivergenceError(RuntimeError):
    """A committed metadata entry cannot be applied: this node's view can no longer follow the
    quorum's. Fatal for the node (it stops), never skipped: skipping would let this node's image
    differ from every other node's for good."""


class MetadataStateMachine:
    """Implements the Raft driver's StateMachine protocol over a MetadataImage."""

    def __init__(self) -> None:
        self.image = MetadataImage()
        self._listeners: list[Callable] = []

    def add_listener(self, listener: Callable) -> None:
        """listener(offset, batch) runs after each applied batch, and with (offset, None) after a restore."""
        self._listeners.append(listener)

    def _tell(self, offset: int, batch) -> None:
        for listener in self._listeners:
            listener(offset, batch)

    def apply(self, index: int, term: int, data: bytes) -> int:
        """Applies one committed entry; returns its offset, which the proposer gets back."""
        try:
            batch = decode_batch(data)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is the same divergence
            raise MetadataDivergenceError(
                f"committed metadata entry {index} (term {term}) is not a MetadataBatch: {exc}"
            ) from exc
        self.image.apply_batch(index, batch)
        self._tell(index, batch)
        return index

    def snapshot(self) -> bytes:
        return self.image.to_snapshot()

    def restore(self, data: bytes, index: int, term: int) -> None:
        self.image = MetadataImage.from_snapshot(data) if data else MetadataImage()
        self.image.offset = index
        self._tell(index, None)
