"""`raftlog groups list|describe|reset-offsets|delete|delete-offsets`, like kafka-consumer-groups."""

from __future__ import annotations

import csv
import datetime as dt
import re
import time

import click

from cli.output import admin_call, bootstrap_option, emit, fail, format_table, output_option

OFFSET_HEADERS = (
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "LAG-MS",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
)
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


@click.group(name="groups")
def command() -> None:
    """List, describe, reset offsets of and delete consumer groups."""


@command.command(name="list")
@click.option("--state", "states", multiple=True, help="Only groups in this state (repeatable), e.g. Stable.")
@bootstrap_option
@output_option
def list_groups(states, bootstrap_server, output_format) -> None:
    """List groups: GROUP, TYPE, STATE."""
    groups = admin_call(bootstrap_server, lambda admin: admin.list_groups())
    wanted = {s.lower() for s in states}
    groups = [g for g in groups if not wanted or g["state"].lower() in wanted]
    emit(
        output_format,
        groups,
        lambda gs: format_table(("GROUP", "TYPE", "STATE"), [(g["group"], g["type"], g["state"]) for g in gs]),
    )


def _group_ids(admin, group: tuple[str, ...], all_groups: bool) -> list[str]:
    if all_groups:
        return [g["group"] for g in admin.list_groups()]
    return list(group)


@command.command(name="describe")
@click.option("--group", multiple=True, help="The group (repeatable).")
@click.option("--all-groups", is_flag=True, help="Every group.")
@click.option("--members", is_flag=True, help="The members view instead of the offsets view.")
@click.option("--verbose", is_flag=True, help="With --members: epochs, states and assignments.")
@click.option("--state", "state_view", is_flag=True, help="The state view: coordinator, assignor, state, members.")
@bootstrap_option
@output_option
def describe(group, all_groups, members, verbose, state_view, bootstrap_server, output_format) -> None:
    """Describe groups: offsets with LAG and LAG-MS (default), --members or --state."""
    if bool(group) == all_groups:
        fail("give --group G (repeatable) or --all-groups")
    if members and state_view:
        fail("--members and --state are different views; give one")
    if verbose and not members:
        fail("--verbose goes with --members")

    def action(admin):
        result = []
        for group_id in _group_ids(admin, group, all_groups):
            if state_view:
                d = admin.describe_group(group_id)
                result.append(
                    {
                        "group": group_id,
                        "type": d["type"],
                        "coordinator": d["coordinator"],
                        "assignor": d["assignor"],
                        "state": d["state"],
                        "members": len(d["members"]),
                        "group_epoch": d["group_epoch"],
                    }
                )
            elif members:
                d = admin.describe_group(group_id)
                for m in d["members"]:
                    row = {
                        "group": group_id,
                        "consumer_id": m["member_id"],
                        "host": m["host"],
                        "client_id": m["client_id"],
                        "instance_id": m["instance_id"],
                        "partitions": len(m["assignment"]),
                    }
                    if verbose:
                        row.update(
                            member_epoch=m["member_epoch"],
                            member_state=m["member_state"],
                            assignment=m["assignment"],
                            target_assignment=m["target_assignment"],
                        )
                    result.append(row)
            else:
                result.extend(admin.describe_group_offsets(group_id))
        return result

    rows = admin_call(bootstrap_server, action)
    if state_view:
        emit(
            output_format,
            rows,
            lambda rs: format_table(
                ("GROUP", "TYPE", "COORDINATOR (ID)", "ASSIGNOR", "STATE", "#MEMBERS"),
                [(r["group"], r["type"], r["coordinator"], r["assignor"], r["state"], r["members"]) for r in rs],
            ),
        )
    elif members:
        headers = ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "GROUP-INSTANCE-ID", "#PARTITIONS"]
        if verbose:
            headers += ["EPOCH", "STATE", "ASSIGNMENT", "TARGET-ASSIGNMENT"]

        def member_row(r):
            row = [r["group"], r["consumer_id"], r["host"], r["client_id"], r["instance_id"] or "-", r["partitions"]]
            if verbose:
                row += [
                    r["member_epoch"],
                    r["member_state"],
                    _tps_text(r["assignment"]),
                    _tps_text(r["target_assignment"]),
                ]
            return row

        emit(output_format, rows, lambda rs: format_table(headers, [member_row(r) for r in rs]))
    else:
        emit(
            output_format,
            rows,
            lambda rs: format_table(
                OFFSET_HEADERS,
                [
                    (
                        r["group"],
                        r["topic"],
                        r["partition"],
                        _dash(r["current_offset"]),
                        r["log_end_offset"],
                        _dash(r["lag"]),
                        _dash(r["lag_ms"]),
                        _dash(r["consumer_id"]),
                        _dash(r["host"]),
                        _dash(r["client_id"]),
                    )
                    for r in rs
                ],
            ),
        )


def _dash(value) -> str:
    return "-" if value is None else str(value)


def _tps_text(tps) -> str:
    return ",".join(f"{t}-{p}" for t, p in tps) or "-"


def _parse_topic_specs(specs: tuple[str, ...]) -> list[tuple[str, list[int] | None]]:
    parsed: list[tuple[str, list[int] | None]] = []
    for spec in specs:
        topic, sep, partitions = spec.partition(":")
        if not topic:
            fail(f"--topic {spec!r}: expected TOPIC or TOPIC:P[,P...]")
        if not sep:
            parsed.append((topic, None))
            continue
        try:
            parsed.append((topic, [int(p) for p in partitions.split(",")]))
        except ValueError:
            fail(f"--topic {spec!r}: partitions must be integers, as TOPIC:0,1,2")
    return parsed


def _resolve_partitions(admin, specs, all_topics: bool, committed: dict) -> list[tuple[str, int]]:
    if all_topics:
        return sorted(committed)
    result = []
    for topic, partitions in specs:
        [described] = admin.describe_topics([topic])
        existing = [p["partition"] for p in described["partitions"]]
        for p in partitions if partitions is not None else existing:
            if p not in existing:
                from raftlog.errors import RaftlogError

                raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"{topic} has no partition {p}")
            result.append((topic, p))
    return sorted(set(result))


def _parse_duration_ms(text: str) -> int:
    match = _DURATION.match(text)
    if not match or text in ("P", "PT"):
        fail(f"--by-duration {text!r}: expected an ISO-8601 duration such as PT30M or P1DT2H")
    assert match is not None  # fail() exits
    days, hours, minutes, seconds = match.groups()
    total_s = int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)
    return int(total_s * 1000)


def _parse_datetime_ms(text: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"--to-datetime {text!r}: expected ISO-8601, such as 2026-01-31T12:00:00 (UTC unless an offset is given)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _read_offsets_file(path: str) -> dict[tuple[str, int], int]:
    offsets = {}
    try:
        with open(path, newline="") as f:
            for number, row in enumerate(csv.reader(f), 1):
                if not row or row[0].startswith("#"):
                    continue
                if len(row) != 3:
                    fail(f"{path}:{number}: expected topic,partition,offset")
                try:
                    offsets[(row[0].strip(), int(row[1]))] = int(row[2])
                except ValueError:
                    fail(f"{path}:{number}: partition and offset must be integers")
    except OSError as exc:
        fail(f"--from-file {path}: {exc.strerror}")
    return offsets


@command.command(name="reset-offsets")
@click.option("--group", required=True)
@click.option("--topic", "topics", multiple=True, help="TOPIC or TOPIC:P[,P...] (repeatable).")
@click.option("--all-topics", is_flag=True, help="Every topic the group has committed offsets for.")
@click.option("--to-earliest", is_flag=True)
@click.option("--to-latest", is_flag=True)
@click.option("--to-offset", type=int, default=None)
@click.option("--shift-by", type=int, default=None)
@click.option("--to-datetime", default=None, help="ISO-8601, e.g. 2026-01-31T12:00:00 (UTC unless an offset is given).")
@click.option("--by-duration", default=None, help="ISO-8601 duration back from now, e.g. PT30M.")
@click.option("--to-current", is_flag=True)
@click.option("--from-file", default=None, help="CSV of topic,partition,offset.")
@click.option("--dry-run", is_flag=True, help="Print the new offsets only (the default).")
@click.option("--execute", is_flag=True, help="Apply the new offsets.")
@bootstrap_option
@output_option
def reset_offsets(
    group,
    topics,
    all_topics,
    to_earliest,
    to_latest,
    to_offset,
    shift_by,
    to_datetime,
    by_duration,
    to_current,
    from_file,
    dry_run,
    execute,
    bootstrap_server,
    output_format,
) -> None:
    """Reset a group's committed offsets (the group must have no active members)."""
    chosen = [
        name
        for name, given in (
            ("--to-earliest", to_earliest),
            ("--to-latest", to_latest),
            ("--to-offset", to_offset is not None),
            ("--shift-by", shift_by is not None),
            ("--to-datetime", to_datetime is not None),
            ("--by-duration", by_duration is not None),
            ("--to-current", to_current),
            ("--from-file", from_file is not None),
        )
        if given
    ]
    if len(chosen) != 1:
        fail(
            "give exactly one of --to-earliest, --to-latest, --to-offset, --shift-by, --to-datetime, "
            "--by-duration, --to-current, --from-file"
        )
    if dry_run and execute:
        fail("--dry-run and --execute exclude each other")
    if from_file is None and bool(topics) == all_topics:
        fail("give --topic (repeatable) or --all-topics")
    specs = _parse_topic_specs(topics)
    file_offsets = _read_offsets_file(from_file) if from_file else None
    timestamp_ms = None
    if to_datetime is not None:
        timestamp_ms = _parse_datetime_ms(to_datetime)
    if by_duration is not None:
        timestamp_ms = int(time.time() * 1000) - _parse_duration_ms(by_duration)

    def action(admin):
        from raftlog.errors import RaftlogError

        described = admin.describe_group(group)
        if described["members"]:
            names = ", ".join(m["member_id"] for m in described["members"])
            raise RaftlogError("NON_EMPTY_GROUP", f"group {group} has active members ({names}); stop them first")
        committed = admin.list_group_offsets(group)
        partitions = (
            sorted(file_offsets)
            if file_offsets is not None
            else _resolve_partitions(admin, specs, all_topics, committed)
        )
        if not partitions:
            raise RaftlogError("INVALID_REQUEST", f"no partitions to reset for group {group}")
        earliest = admin.list_offsets(partitions, -2)
        latest = admin.list_offsets(partitions, -1)
        by_time = admin.list_offsets(partitions, timestamp_ms) if timestamp_ms is not None else {}
        new = {}
        for tp in partitions:
            current = committed.get(tp)
            if to_earliest:
                offset = earliest[tp]
            elif to_latest:
                offset = latest[tp]
            elif to_offset is not None:
                offset = to_offset
            elif shift_by is not None:
                if current is None:
                    raise RaftlogError("INVALID_REQUEST", f"{tp[0]}-{tp[1]} has no committed offset to shift")
                offset = current + shift_by
            elif timestamp_ms is not None:
                offset = by_time[tp] if by_time[tp] >= 0 else latest[tp]
            elif to_current:
                if current is None:
                    raise RaftlogError("INVALID_REQUEST", f"{tp[0]}-{tp[1]} has no committed offset")
                offset = current
            else:
                offset = file_offsets[tp]
            if not earliest[tp] <= offset <= latest[tp]:
                raise RaftlogError(
                    "OFFSET_OUT_OF_RANGE",
                    f"{tp[0]}-{tp[1]}: offset {offset} is outside the log "
                    f"[{earliest[tp]}, {latest[tp]}]; nothing was changed",
                )
            new[tp] = offset
        if execute:
            admin.alter_group_offsets(group, new)
        return [{"group": group, "topic": t, "partition": p, "new_offset": o} for (t, p), o in sorted(new.items())]

    rows = admin_call(bootstrap_server, action)
    emit(
        output_format,
        rows,
        lambda rs: (
            format_table(
                ("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"),
                [(r["group"], r["topic"], r["partition"], r["new_offset"]) for r in rs],
            )
            + ("" if execute else "\n(dry run: nothing changed; add --execute to apply)")
        ),
    )


@command.command(name="delete")
@click.option("--group", multiple=True, required=True, help="The group (repeatable).")
@bootstrap_option
@output_option
def delete(group, bootstrap_server, output_format) -> None:
    """Delete groups that have no active members, with their offsets."""

    def action(admin):
        for group_id in group:
            admin.delete_group(group_id)
        return {"deleted": list(group)}

    result = admin_call(bootstrap_server, action)
    emit(
        output_format,
        result,
        lambda r: (
            "Deletion of requested consumer groups (" + ", ".join(f"'{g}'" for g in r["deleted"]) + ") was successful."
        ),
    )


@command.command(name="delete-offsets")
@click.option("--group", required=True)
@click.option("--topic", "topics", multiple=True, required=True, help="TOPIC or TOPIC:P[,P...] (repeatable).")
@bootstrap_option
@output_option
def delete_offsets(group, topics, bootstrap_server, output_format) -> None:
    """Delete a group's committed offsets of topics it no longer consumes."""
    specs = _parse_topic_specs(topics)

    def action(admin):
        committed = admin.list_group_offsets(group)
        partitions = [
            tp for tp in sorted(committed) if any(tp[0] == t and (ps is None or tp[1] in ps) for t, ps in specs)
        ]
        if not partitions:
            from raftlog.errors import RaftlogError

            raise RaftlogError("INVALID_REQUEST", f"group {group} has no committed offsets for {', '.join(topics)}")
        admin.delete_group_offsets(group, partitions)
        return [{"group": group, "topic": t, "partition": p} for t, p in partitions]

    rows = admin_call(bootstrap_server, action)
    emit(
        output_format,
        rows,
        lambda rs: format_table(
            ("GROUP", "TOPIC", "PARTITION", "STATUS"), [(r["group"], r["topic"], r["partition"], "deleted") for r in rs]
        ),
    )
