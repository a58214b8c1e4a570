"""`raftlog configs describe|alter`, like kafka-configs."""

from __future__ import annotations

import click

from cli.output import admin_call, bootstrap_option, emit, fail, format_table, output_option
from raftlog import config as node_config


def _entity_options(func):
    func = click.option("--entity-default", is_flag=True, help="The default entity of the type.")(func)
    func = click.option("--entity-name", help="Broker id or topic name.")(func)
    func = click.option("--entity-type", required=True, type=click.Choice(["brokers", "topics"]))(func)
    return func


def _entity_name(entity_type: str, entity_name: str | None, entity_default: bool) -> str:
    if entity_default == (entity_name is not None):
        fail("give exactly one of --entity-name and --entity-default")
    if entity_default and entity_type != "brokers":
        fail("--entity-default applies to --entity-type brokers only")
    return entity_name or ""


def _parse_add_config(text: str) -> dict[str, str]:
    """Kafka's form: k1=v1,k2=v2; a value with commas goes in [brackets]."""
    configs: dict[str, str] = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--add-config {item!r}: expected key=value")
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        configs[key.strip()] = value
    return configs


def _split_top_level(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current)
    return [item for item in items if item.strip()]


@click.group(name="configs")
def command() -> None:
    """Dynamic configuration of brokers and topics."""


def _describe_text(data) -> str:
    title = f"Configs for {data['entity']}:"
    if not data["configs"]:
        return f"{title}\n  (no dynamic configs)"
    rows = [(c["name"], c["value"], c["source"], "yes" if c["read_only"] else "no") for c in data["configs"]]
    return title + "\n" + format_table(["Name", "Value", "Source", "ReadOnly"], rows)


@command.command(name="describe")
@_entity_options
@click.option("--all", "include_static", is_flag=True, help="Also list static and default values.")
@bootstrap_option
@output_option
def describe(entity_type, entity_name, entity_default, include_static, bootstrap_server, output_format) -> None:
    """Show the configs of one entity (dynamic ones, or all with --all)."""
    name = _entity_name(entity_type, entity_name, entity_default)
    configs = admin_call(bootstrap_server, lambda admin: admin.describe_configs(entity_type, name, include_static))
    label = f"{entity_type[:-1]} {name}" if name else f"{entity_type[:-1]}-default"
    emit(output_format, {"entity": label, "configs": configs}, _describe_text)


@command.command(name="alter")
@_entity_options
@click.option("--add-config", "add_config", help="k1=v1,k2=[v,with,commas]")
@click.option("--delete-config", "delete_config", help="k1,k2")
@click.option("--validate-only", is_flag=True, help="Check the change without committing it.")
@bootstrap_option
@output_option
def alter(
    entity_type, entity_name, entity_default, add_config, delete_config, validate_only, bootstrap_server, output_format
) -> None:
    """Set or delete dynamic configs (committed through the metadata quorum)."""
    name = _entity_name(entity_type, entity_name, entity_default)
    to_set = _parse_add_config(add_config) if add_config else {}
    to_delete = [k.strip() for k in (delete_config or "").split(",") if k.strip()]
    if not to_set and not to_delete:
        fail("nothing to do: give --add-config and/or --delete-config")
    if set(to_set) & set(to_delete):
        fail(f"configs both added and deleted: {', '.join(sorted(set(to_set) & set(to_delete)))}")
    offset = admin_call(
        bootstrap_server, lambda admin: admin.alter_configs(entity_type, name, to_set, to_delete, validate_only)
    )
    label = f"{entity_type[:-1]} {name}" if name else f"{entity_type[:-1]}-default"
    warnings = _ignored_kafka_settings(entity_type, to_set)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    result = {
        "entity": label,
        "set": to_set,
        "deleted": to_delete,
        "validate_only": validate_only,
        "offset": offset,
        "warnings": warnings,
    }
    verb = "Validated" if validate_only else "Completed updating"
    emit(output_format, result, lambda r: f"{verb} config for {r['entity']}.")


def _ignored_kafka_settings(entity_type: str, to_set: dict[str, str]) -> list[str]:
    """Kafka broker settings the cluster accepted that have no meaning here, one line each."""
    if entity_type != "brokers":
        return []
    return [node_config.ignored_warning(key) for key in to_set if key in node_config.KAFKA_IGNORED]
