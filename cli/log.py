"""`raftlog log dump PATH`: decode segment files offline, like kafka-dump-log."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.output import fail


@click.group(name="log")
def command() -> None:
    """Offline tools for partition logs."""


@command.command(name="dump")
@click.argument("path", type=click.Path())
@click.option("--print-records", is_flag=True, help="Also decode and print every record.")
@click.option(
    "--offsets-decoder",
    is_flag=True,
    help="Decode records as __consumer_offsets commits and group metadata (implies --print-records).",
)
@click.option("--output", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def dump(path, print_records, offsets_decoder, output_format) -> None:
    """Print the batches of a segment file or of every segment in a partition directory."""
    from raftlog.groups.records import describe_record
    from raftlog.log.dump import dump_segment, format_entry, segment_files

    decoder = describe_record if offsets_decoder else None
    print_records = print_records or offsets_decoder

    try:
        files = segment_files(Path(path))
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    invalid = False
    result = []
    for segment in files:
        entries = list(dump_segment(segment, print_records, decoder))
        invalid |= any(not e["isvalid"] for e in entries)
        if output_format == "json":
            result.append({"file": str(segment), "batches": entries})
        else:
            click.echo(f"Dumping {segment}")
            for entry in entries:
                click.echo(format_entry(entry))
    if output_format == "json":
        click.echo(json.dumps(result, indent=2))
    if invalid:
        raise SystemExit(2)
