"""The Raft state machine of every node: committed entries -> MetadataImage."""

from __future__ import annotations

import logging
from collections.abc import Callable

from raftlog.metadata.image import MetadataImage
from raftlog.metadata.records import decode_batch

log = logging.getLogger(__name__)


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
        except Exception:  # noqa: BLE001 - a record we cannot parse must not stop the node
            log.error("metadata entry %d (term %d) is not a MetadataBatch; skipped", index, term)
            self.image.offset = index
            return index
        self.image.apply_batch(index, batch)
        self._tell(index, batch)
        return index

    def snapshot(self) -> bytes:
        return self.image.to_snapshot()

    def restore(self, data: bytes, index: int, term: int) -> None:
        self.image = MetadataImage.from_snapshot(data) if data else MetadataImage()
        self.image.offset = index
        self._tell(index, None)
