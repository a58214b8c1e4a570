"""Offline decoding of segment files, like kafka-dump-log (used by `raftlog log dump`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from raftlog.log.errors import LogError
from raftlog.log.record_batch import (
    HEADER,
    HEADER_SIZE,
    BatchHeader,
    decode_batch,
    read_header,
)


def segment_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.log") if p.stem.isdigit())
        if not files:
            raise FileNotFoundError(f"{path} holds no segment (.log) files")
        return files
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix != ".log":
        raise ValueError(f"{path} is not a segment file (.log) or a partition directory")
    return [path]


def dump_segment(
    path: Path, print_records: bool, record_decoder: Callable[[bytes | None, bytes | None], str] | None = None
) -> Iterator[dict]:
    """One dict per batch; a damaged tail ends the dump with an isvalid=false entry. A
    record_decoder (e.g. the __consumer_offsets one) turns each record's key and value into one
    readable payload line."""
    data = path.read_bytes()
    position = 0
    while position < len(data):
        if len(data) - position < HEADER_SIZE:
            yield {"position": position, "isvalid": False, "error": "torn batch header at end of file"}
            return
        raw = BatchHeader(*HEADER.unpack_from(data, position))
        entry = _batch_entry(raw, position)
        try:
            header = read_header(data, position)
            entry["isvalid"] = True
            if print_records:
                entry["records"] = [_record_entry(r, header, record_decoder) for r in decode_batch(data, position)[1]]
        except LogError as exc:
            entry["isvalid"], entry["error"] = False, exc.message
            yield entry
            return
        yield entry
        position += header.size


def _batch_entry(header: BatchHeader, position: int) -> dict:
    return {
        "baseOffset": header.base_offset,
        "lastOffset": header.last_offset,
        "count": header.record_count,
        "baseSequence": header.base_sequence,
        "lastSequence": header.last_sequence,
        "producerId": header.producer_id,
        "producerEpoch": header.producer_epoch,
        "partitionLeaderEpoch": header.partition_leader_epoch,
        "isTransactional": header.is_transactional,
        "isControl": header.is_control,
        "position": position,
        header.timestamp_type: header.max_timestamp,
        "size": header.size,
        "magic": header.magic,
        "compresscodec": header.compression,
        "crc": header.crc,
    }


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "backslashreplace")


def _record_entry(record, header: BatchHeader, record_decoder=None) -> dict:
    if record_decoder is not None:
        return {
            "offset": record.offset,
            header.timestamp_type: record.timestamp,
            "payload": record_decoder(record.key, record.value),
        }
    return {
        "offset": record.offset,
        header.timestamp_type: record.timestamp,
        "keySize": -1 if record.key is None else len(record.key),
        "valueSize": -1 if record.value is None else len(record.value),
        "sequence": header.base_sequence + record.offset - header.base_offset if header.base_sequence >= 0 else -1,
        "headerKeys": [k for k, _ in record.headers],
        "key": _text(record.key),
        "payload": _text(record.value),
        "headers": {k: _text(v) for k, v in record.headers},
    }


def format_entry(entry: dict) -> str:
    """kafka-dump-log's line format."""
    records = entry.get("records", [])
    plain = {k: v for k, v in entry.items() if k != "records"}
    line = " ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in plain.items())
    lines = [line]
    for record in records:
        fields = {k: v for k, v in record.items() if k != "headers"}
        lines.append("| " + " ".join(f"{k}: {v}" for k, v in fields.items()))
    return "\n".join(lines)
