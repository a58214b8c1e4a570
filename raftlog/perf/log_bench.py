"""`raftlog perf log`: the storage engine's append/read speed next to the raw disk, and codec speed.

Append cases: record size x batch size x (durable: fdatasync after every append, through
GroupCommit; relaxed: no fsync). The raw disk figure is 1 MiB writes with fdatasync on
the same directory, so the ratio shows what the engine costs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from raftlog.log import GroupCommit, LogConfig, PartitionLog
from raftlog.log.record_batch import decode_batch, encode_batch

MIB = 1024 * 1024


def _batch(record_size: int, batch_bytes: int) -> tuple[bytes, int]:
    count = max(1, batch_bytes // (record_size + 10))
    payload = os.urandom(record_size)
    now = int(time.time() * 1000)
    return encode_batch([(None, payload, None, now)] * count), count


def raw_disk_mb_per_s(directory: Path, total_bytes: int) -> float:
    path = directory / "raw.bin"
    block = os.urandom(MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    started = time.perf_counter()
    try:
        for _ in range(max(1, total_bytes // MIB)):
            os.write(fd, block)
            os.fdatasync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - started
    path.unlink()
    return total_bytes / MIB / elapsed


async def _append_case(directory: Path, batch: bytes, count: int, total_bytes: int, durable: bool) -> dict:
    log = PartitionLog(
        directory, LogConfig(flush_messages=1 if durable else 2**62, segment_bytes=256 * MIB, max_message_bytes=8 * MIB)
    )
    group = GroupCommit(log)
    appends = max(1, total_bytes // len(batch))
    started = time.perf_counter()
    for _ in range(appends):
        result = log.append(batch, leader_epoch=0)
        if durable:
            await group.sync(result.last_offset)
    elapsed = time.perf_counter() - started
    read_started = time.perf_counter()
    offset, read_bytes = 0, 0
    while offset < log.log_end_offset:
        data = log.read(offset, 4 * MIB)
        read_bytes += len(data)
        offset += (len(data) // len(batch)) * count
    read_elapsed = time.perf_counter() - read_started
    log.close()
    size = appends * len(batch)
    return {
        "mb_per_s": size / MIB / elapsed,
        "records_per_s": appends * count / elapsed,
        "read_mb_per_s": read_bytes / MIB / read_elapsed,
    }


def codec_speed(record_size: int = 100, records: int = 1000, seconds: float = 1.0) -> dict:
    # Distinct keys, values and timestamps: identical rows would flatter the varint and slice work.
    rows = [(b"key-%06d" % i, os.urandom(record_size), None, 1_700_000_000_000 + i) for i in range(records)]
    encoded, started, count = b"", time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        encoded = encode_batch(rows)
        count += records
    encode_rate = count / (time.perf_counter() - started)
    started, count = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        decode_batch(encoded)
        count += records
    return {"encode_records_per_s": encode_rate, "decode_records_per_s": count / (time.perf_counter() - started)}


def run_log_bench(directory: Path | None, total_mb: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix="raftlog-perf-log-", dir=directory))
    total_bytes = total_mb * MIB
    try:
        # Measured before and after the cases (a virtual disk's speed drifts); the better one
        # is the denominator, so a ratio never flatters the engine.
        raw_before = raw_disk_mb_per_s(base, total_bytes)
        appends: list[dict] = []
        results: dict = {"raw_fdatasync_1mib_mb_per_s": raw_before, "appends": appends}
        for record_size in (100, 1024):
            for batch_bytes in (16 * 1024, MIB):
                batch, count = _batch(record_size, batch_bytes)
                for durable in (True, False):
                    case_dir = base / f"case-{record_size}-{batch_bytes}-{durable}"
                    figures = asyncio.run(_append_case(case_dir, batch, count, total_bytes, durable))
                    results["appends"].append(
                        {"record_bytes": record_size, "batch_bytes": batch_bytes, "durable": durable, **figures}
                    )
                    shutil.rmtree(case_dir)
        raw_after = raw_disk_mb_per_s(base, total_bytes)
        results["raw_fdatasync_1mib_mb_per_s"] = max(raw_before, raw_after)
        results["raw_fdatasync_runs_mb_per_s"] = [raw_before, raw_after]
        results["codec_100_byte_records"] = codec_speed()
        return results
    finally:
        shutil.rmtree(base, ignore_errors=True)
