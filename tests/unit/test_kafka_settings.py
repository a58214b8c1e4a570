"""Kafka broker settings from a tuning guide carry over: each one with a meaning here is that
setting (or mapped to it), each one without is accepted with a warning that says why; a name that
is neither a raftlog key nor a Kafka setting stays an error. Static and through configs alter."""

from __future__ import annotations

import pytest

from raftlog.config import (
    KAFKA_IGNORED,
    ConfigError,
    load_config,
    resolve_dynamic_setting,
)
from raftlog.controller import decisions
from raftlog.errors import RaftlogError
from raftlog.metadata.image import MetadataImage
from raftlog.topic_config import effective_topic_config
from raftlog.v1 import admin_pb2
from tests.unit.test_config import base_env

# The tuning section of a Kafka operations guide, with plausible values.
TUNING_GUIDE = {
    "num.io.threads": "16",
    "num.network.threads": "8",
    "log.flush.interval.messages": "10000",
    "log.flush.interval.ms": "1000",
    "num.replica.fetchers": "4",
    "replica.fetch.max.bytes": "1048576",
    "socket.send.buffer.bytes": "1048576",
    "socket.receive.buffer.bytes": "1048576",
    "socket.request.max.bytes": "104857600",
    "queued.max.requests": "500",
    "background.threads": "10",
    "log.cleaner.threads": "2",
    "compression.type": "lz4",
    "message.max.bytes": "2097152",
    "replica.fetch.wait.max.ms": "250",
    "replica.socket.timeout.ms": "30000",
    "zookeeper.connect": "zk1:2181,zk2:2181",
    "log.retention.minutes": "90",
    "log.roll.hours": "2",
    "num.recovery.threads.per.data.dir": "2",
}


def load(settings: dict[str, str], **env):
    return load_config(environ=base_env(**env), overrides=[f"{k}={v}" for k, v in settings.items()])


def test_every_tuning_guide_setting_is_accepted_and_those_with_a_meaning_take_effect():
    config = load(TUNING_GUIDE)
    assert config["replica.fetch.max.bytes"] == 1048576 and config["replica.fetch.wait.max.ms"] == 250
    assert config["log.retention.ms"] == 90 * 60_000 and config["log.roll.ms"] == 2 * 3_600_000
    topic = {name: value for name, (value, _) in effective_topic_config({}, config.values).items()}
    assert topic["flush.messages"] == "10000" and topic["flush.ms"] == "1000"
    assert topic["compression.type"] == "lz4" and topic["max.message.bytes"] == "2097152"
    assert topic["retention.ms"] == str(90 * 60_000) and topic["segment.ms"] == str(2 * 3_600_000)


def test_a_setting_without_a_meaning_here_warns_once_naming_why():
    config = load(TUNING_GUIDE)
    ignored = sorted(name for name in TUNING_GUIDE if name in KAFKA_IGNORED)
    assert len(config.warnings) == len(ignored) == 12
    assert "num.network.threads: ignored: raftlog serves every connection on one asyncio loop per node" in (
        config.warnings
    )
    assert all(w.split(":")[0] in ignored and ": ignored: " in w for w in config.warnings)
    assert load({"num.partitions": "3"}).warnings == []


def test_kafka_settings_come_from_the_environment_too():
    config = load({}, RAFTLOG_NUM_IO_THREADS="8", RAFTLOG_LOG_RETENTION_MINUTES="5")
    assert config["log.retention.ms"] == 300_000
    assert [w.split(":")[0] for w in config.warnings] == ["num.io.threads"]


def test_the_raftlog_key_wins_over_its_kafka_alias_as_in_kafka():
    config = load({"log.retention.minutes": "90", "log.retention.ms": "1000"})
    assert config["log.retention.ms"] == 1000
    assert load({"broker.id": "1"}, RAFTLOG_NODE_ID="1").node_id == 1


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"num.io.thread": "8"}, "unknown configuration key 'num.io.thread'"),
        ({"compression.type": "brotli"}, "compression.type"),
        ({"log.retention.minutes": "soon"}, "log.retention.minutes: 'soon' is not a valid int"),
        ({"replica.fetch.max.bytes": str(1 << 30)}, "replica.fetch.max.bytes must be <="),
    ],
)
def test_unknown_names_and_bad_values_stay_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        load(settings)


def test_dynamic_kafka_settings_through_configs_alter():
    # Kafka makes these dynamic: stored under the raftlog name, or as given with a warning.
    assert resolve_dynamic_setting("log.flush.interval.messages", "500") == ("log.flush.interval.messages", "500", None)
    assert resolve_dynamic_setting("log.retention.minutes", "2") == ("log.retention.ms", "120000", None)
    name, value, warning = resolve_dynamic_setting("num.io.threads", "16")
    assert (name, value) == ("num.io.threads", "16") and warning.startswith("num.io.threads: ignored: ")
    for static_in_kafka in ("queued.max.requests", "zookeeper.connect", "broker.id"):
        with pytest.raises(ConfigError, match="not a dynamic broker config"):
            resolve_dynamic_setting(static_in_kafka, "1")
    with pytest.raises(ConfigError, match="not a dynamic broker config"):
        resolve_dynamic_setting("num.io.thread", "1")


def test_the_controller_stores_dynamic_kafka_settings_under_their_meaning():
    image = MetadataImage()
    resource = admin_pb2.ConfigResource(type="brokers", name="")
    ops = [
        admin_pb2.AlterConfigOp(name="log.retention.minutes", value="2"),
        admin_pb2.AlterConfigOp(name="num.network.threads", value="8"),
        admin_pb2.AlterConfigOp(name="replica.fetch.max.bytes", value="1"),
    ]
    with pytest.raises(RaftlogError) as info:
        decisions.alter_configs(image, resource, ops)  # replica.fetch.max.bytes is static, as in Kafka
    assert info.value.reason == "INVALID_CONFIG"
    stored = decisions.alter_configs(image, resource, ops[:2])
    assert [(r.config.name, r.config.value) for r in stored] == [
        ("log.retention.ms", "120000"),
        ("num.network.threads", "8"),
    ]
    delete = admin_pb2.AlterConfigOp(name="log.retention.minutes", op=admin_pb2.AlterConfigOp.DELETE)
    [deleted] = decisions.alter_configs(image, resource, [delete])
    assert deleted.config.name == "log.retention.ms"
