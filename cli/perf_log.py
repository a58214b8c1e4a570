"""`raftlog perf log`."""

from __future__ import annotations

import click

from cli.output import emit, output_option


def _text(r: dict) -> str:
    raw = r["raw_fdatasync_1mib_mb_per_s"]
    runs = ", ".join(f"{r:.1f}" for r in r["raw_fdatasync_runs_mb_per_s"])
    lines = [f"raw disk, 1 MiB writes + fdatasync: {raw:.1f} MB/s (best of {runs}: before and after the cases)"]
    for a in r["appends"]:
        mode = "fsync per append" if a["durable"] else "relaxed        "
        ratio = f" ({a['mb_per_s'] / raw * 100:.0f}% of raw)" if a["durable"] else ""
        lines.append(
            f"append {a['record_bytes']:>5} B records, {a['batch_bytes'] // 1024:>5} KiB batches, {mode}: "
            f"{a['mb_per_s']:8.1f} MB/s {a['records_per_s']:12,.0f} records/s{ratio}; "
            f"read {a['read_mb_per_s']:.1f} MB/s"
        )
    codec = r["codec_100_byte_records"]
    lines.append(
        f"codec, 100-byte records with 10-byte keys: encode {codec['encode_records_per_s']:,.0f} records/s, "
        f"decode {codec['decode_records_per_s']:,.0f} records/s"
    )
    return "\n".join(lines)


@click.command(name="log")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to write (default: the system temp dir).",
)
@click.option("--total-mb", type=int, default=64, show_default=True, help="Bytes written per case.")
@output_option
def command(directory, total_mb, output_format) -> None:
    """Storage engine: append/read throughput vs the raw disk, codec speed."""
    from pathlib import Path

    from raftlog.perf.log_bench import run_log_bench

    emit(output_format, run_log_bench(Path(directory) if directory else None, total_mb), _text)
