"""Storage errors, each with the Kafka error name a broker reports for it."""

from __future__ import annotations

from raftlog.errors import RaftlogError


class LogError(RaftlogError):
    def __init__(self, message: str, reason: str = "KAFKA_STORAGE_ERROR"):
        super().__init__(reason, message)


class CorruptRecordError(LogError):
    """Bytes that are not a valid RecordBatch v2 (length, CRC, magic, offsets, record fields)."""

    def __init__(self, message: str, reason: str = "CORRUPT_MESSAGE"):
        super().__init__(message, reason)


class UnsupportedCompressionError(LogError):
    def __init__(self, message: str):
        super().__init__(message, "UNSUPPORTED_COMPRESSION_TYPE")


class OffsetOutOfRangeError(LogError):
    def __init__(self, message: str):
        super().__init__(message, "OFFSET_OUT_OF_RANGE")


class CorruptLogError(LogError):
    """Stored data that fails its CRC (found by a read, the scrubber or recovery). Clients get
    KAFKA_STORAGE_ERROR (refresh metadata, retry): this replica stops serving the partition."""

    def __init__(self, message: str, offset: int):
        super().__init__(message, "KAFKA_STORAGE_ERROR")
        self.offset = offset  # first offset of the first bad batch: the log is cut there to repair
