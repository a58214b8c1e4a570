import pytest

from raftlog.config import ConfigError, load_config, parse_dynamic_value

VOTERS = "1@127.0.0.1:19091,2@127.0.0.1:19092,3@127.0.0.1:19093"


def base_env(**extra):
    env = {"RAFTLOG_NODE_ID": "1", "RAFTLOG_CONTROLLER_QUORUM_VOTERS": VOTERS, "RAFTLOG_LOG_DIRS": "/tmp/raftlog-x"}
    env.update(extra)
    return env


def test_file_then_env_then_flags_in_rising_priority(tmp_path):
    config_file = tmp_path / "node.toml"
    config_file.write_text(
        f'"node.id" = 2\n"controller.quorum.voters" = "{VOTERS}"\n"log.dirs" = "/data/a,/data/b"\n'
        "[log.retention]\nhours = 10\n"
    )
    config = load_config(config_file, environ={"RAFTLOG_LOG_RETENTION_HOURS": "20"}, overrides=["node.id=3"])
    assert config.node_id == 3
    assert config["log.retention.hours"] == 20
    assert [str(d) for d in config.log_dirs] == ["/data/a", "/data/b"]
    # listeners defaults to the node's own voter address, metadata dir to the first log dir
    assert str(config.listener) == "127.0.0.1:19093"
    assert str(config.metadata_dir) == "/data/a"
    assert config.explicit >= {"node.id", "log.retention.hours", "log.dirs"}


def test_nested_toml_tables_name_dotted_keys(tmp_path):
    config_file = tmp_path / "node.toml"
    config_file.write_text(f'[node]\nid = 1\n[controller.quorum]\nvoters = "{VOTERS}"\n[log]\ndirs = ["/d"]\n')
    assert load_config(config_file, environ={}).node_id == 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["node.id=4"], "listeners is required: node 4 is not a voter"),
        (["controller.quorum.voters=1@127.0.0.1:1,1@127.0.0.1:2"], "voter id 1 appears twice"),
        (["controller.quorum.voters=1@127.0.0.1"], "is not host:port"),
        (["controller.quorum.voters=1@bad host:9"], "not a valid host"),
        (["controller.quorum.voters=x@127.0.0.1:9"], "is not id@host:port"),
        (["listeners=127.0.0.1:99999"], "is not host:port"),
        (["no.such.key=1"], "unknown configuration key"),
        (["listeners=A://0.0.0.0:9092,B://0.0.0.0:9093"], "no entry for listener A"),
        (
            ["listeners=INTERNAL://n1:9092", "listener.security.protocol.map=INTERNAL:SASL_SSL"],
            "listener INTERNAL carries Raft and replication traffic",
        ),
        (
            ["listeners=INTERNAL://n1:9092", "listener.security.protocol.map=INTERNAL:KERBEROS"],
            "security protocol KERBEROS is not supported",
        ),
        (
            [
                "listeners=INTERNAL://n1:9092,SASL://n1:9093",
                "listener.security.protocol.map=INTERNAL:PLAINTEXT,SASL:SASL_PLAINTEXT",
                "inter.broker.listener.name=INTERNAL",
                "sasl.enabled.mechanisms=PLAIN",
            ],
            "needs SCRAM-SHA-256 or SCRAM-SHA-512",
        ),
        (["sasl.enabled.mechanisms=GSSAPI"], "GSSAPI is not one of"),
        (
            ["listeners=INTERNAL://n1:9092", "listener.security.protocol.map=INTERNAL:SSL"],
            "listener INTERNAL is SSL: ssl.certificate.location is required",
        ),
        (
            [
                "listeners=INTERNAL://n1:9092",
                "listener.security.protocol.map=INTERNAL:SSL",
                "ssl.certificate.location=/c.pem",
                "ssl.key.location=/c.key",
            ],
            "ssl.truststore.location is required: internal SSL listeners verify peer certificates",
        ),
        (
            [
                "listeners=INTERNAL://n1:9092,CLIENT://n1:9093",
                "listener.security.protocol.map=INTERNAL:SSL,CLIENT:SSL",
                "inter.broker.listener.name=INTERNAL",
                "ssl.certificate.location=/c.pem",
                "ssl.key.location=/c.key",
                "ssl.truststore.location=/ca.pem",
                "ssl.client.auth=requested",
            ],
            "ssl.client.auth=requested is not supported on gRPC SSL client listener CLIENT: grpcio's server offers only",
        ),
        (
            [
                "listeners=INTERNAL://n1:9092,CONTROLLER://n1:9093",
                "listener.security.protocol.map=INTERNAL:PLAINTEXT,CONTROLLER:SSL",
                "inter.broker.listener.name=INTERNAL",
                "controller.listener.names=CONTROLLER",
            ],
            "must share one security protocol",
        ),
        (
            [
                "listeners=INTERNAL://127.0.0.1:9092,CLIENT://127.0.0.1:19091",
                "listener.security.protocol.map=INTERNAL:PLAINTEXT,CLIENT:PLAINTEXT",
                "inter.broker.listener.name=INTERNAL",
            ],
            "port 19091, the port of client listener CLIENT; it must be an internal listener.s",
        ),
        (
            [
                "listeners=INTERNAL://n1:9092",
                "listener.security.protocol.map=INTERNAL:PLAINTEXT",
                "controller.listener.names=X",
            ],
            "controller.listener.names: X is not one of listeners",
        ),
        (["listeners=INTERNAL://n1:9092,INTERNAL://n1:9093"], "listener name INTERNAL appears twice"),
        (
            ["listeners=A://n1:9092,B://n1:9092", "listener.security.protocol.map=A:PLAINTEXT,B:PLAINTEXT"],
            "port 9092 is used by more than one listener",
        ),
        (["listeners=0.0.0.0:9092"], "would advertise 0.0.0.0"),
        (["listeners=n1:9092", "advertised.listeners=EXTERNAL://localhost:29092"], "EXTERNAL is not one of listeners"),
        (
            ["listeners=A://n1:9092,B://n1:9093", "listener.security.protocol.map=A:PLAINTEXT,B:PLAINTEXT"],
            "inter.broker.listener.name is required",
        ),
        (
            ["listeners=A://n1:9092", "listener.security.protocol.map=A:PLAINTEXT", "inter.broker.listener.name=B"],
            "inter.broker.listener.name B is not one of listeners",
        ),
        (["node.id=abc"], "is not a valid int"),
        (["process.roles=broker,zookeeper"], "is not a subset of broker,controller"),
        (["process.roles=broker"], "is one of controller.quorum.voters but process.roles is broker"),
        (["node.id=7", "process.roles=broker"], "listeners is required: node 7 is not a voter"),
        (["process.roles=broker,broker"], "names a role twice"),
        (["controller.quorum.heartbeat.interval.ms=600"], "must be below"),
        (["min.insync.replicas=0"], "must be >= 1"),
        (["novalue"], "expected key=value"),
    ],
)
def test_bad_configuration_is_one_clear_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, environ=base_env(), overrides=overrides)
    assert "\n" not in str(info.value)


KAFKA_SSL = [
    "listeners=INTERNAL://127.0.0.1:19091",
    "kafka.listeners=127.0.0.1:19891",
    "listener.security.protocol.map=INTERNAL:SSL,KAFKA:SSL",
    "ssl.certificate.location=/c.pem",
    "ssl.key.location=/c.key",
    "ssl.truststore.location=/ca.pem",
]


def test_a_kafka_listener_is_ssl_by_the_listener_map_and_may_request_client_certificates():
    config = load_config(None, environ=base_env(), overrides=[*KAFKA_SSL, "ssl.client.auth=requested"])
    assert config.kafka_security == {"KAFKA": "SSL"}
    # Without an entry a Kafka listener is PLAINTEXT (or SSL when it is named SSL, as in Kafka's map).
    plain = load_config(None, environ=base_env(), overrides=["kafka.listeners=127.0.0.1:19891"])
    assert plain.kafka_security == {"KAFKA": "PLAINTEXT"}
    named = load_config(None, environ=base_env(), overrides=["kafka.listeners=SSL://127.0.0.1:19891", *KAFKA_SSL[3:5]])
    assert named.kafka_security == {"SSL": "SSL"}


def test_a_kafka_listener_may_be_sasl_ssl_or_sasl_plaintext():
    map_sasl_ssl = "listener.security.protocol.map=INTERNAL:SSL,KAFKA:SASL_SSL"
    config = load_config(None, environ=base_env(), overrides=[*KAFKA_SSL[:2], map_sasl_ssl, *KAFKA_SSL[3:]])
    assert config.kafka_security == {"KAFKA": "SASL_SSL"}
    map_sasl_plaintext = "listener.security.protocol.map=INTERNAL:PLAINTEXT,KAFKA:SASL_PLAINTEXT"
    plain = load_config(None, environ=base_env(), overrides=[*KAFKA_SSL[:2], map_sasl_plaintext])
    assert plain.kafka_security == {"KAFKA": "SASL_PLAINTEXT"}
    # TLS needs the node's files, as SSL does.
    with pytest.raises(ConfigError, match="Kafka listener KAFKA is SASL_SSL: ssl.certificate.location is required"):
        load_config(
            None,
            environ=base_env(),
            overrides=[*KAFKA_SSL[:2], "listener.security.protocol.map=INTERNAL:PLAINTEXT,KAFKA:SASL_SSL"],
        )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            [*KAFKA_SSL[:2], "listener.security.protocol.map=INTERNAL:PLAINTEXT,KAFKA:SSL"],
            "Kafka listener KAFKA is SSL",
        ),
        ([*KAFKA_SSL[:2], "listener.security.protocol.map=INTERNAL:PLAINTEXT,KAFKA:TLS"], "TLS is not supported"),
        (
            [*KAFKA_SSL[:2], "listener.security.protocol.map=INTERNAL:PLAINTEXT,KAFKA:SSL", *KAFKA_SSL[3:5]]
            + ["ssl.client.auth=requested"],
            "ssl.client.auth=requested needs ssl.truststore.location",
        ),
    ],
)
def test_a_bad_kafka_listener_security_setting_is_one_clear_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, environ=base_env(), overrides=overrides)


def test_named_listeners_as_kafka_writes_them():
    config = load_config(
        None,
        environ=base_env(
            RAFTLOG_LISTENERS="INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:29092",
            RAFTLOG_ADVERTISED_LISTENERS="INTERNAL://raftlog-1:9092,EXTERNAL://localhost:29092",
            RAFTLOG_LISTENER_SECURITY_PROTOCOL_MAP="INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
            RAFTLOG_INTER_BROKER_LISTENER_NAME="INTERNAL",
        ),
    )
    assert [str(listener) for listener in config.listeners] == ["INTERNAL://0.0.0.0:9092", "EXTERNAL://0.0.0.0:29092"]
    assert [str(listener) for listener in config.advertised_listeners] == [
        "INTERNAL://raftlog-1:9092",
        "EXTERNAL://localhost:29092",
    ]
    # the broker registers the inter-broker listener's advertised address as its own
    assert str(config.advertised) == "raftlog-1:9092"
    assert str(config.listener) == "0.0.0.0:9092"


def test_a_plain_host_port_listener_is_named_plaintext_and_advertised_as_bound():
    config = load_config(None, environ=base_env(RAFTLOG_LISTENERS="127.0.0.1:19091"))
    assert [str(listener) for listener in config.listeners] == ["PLAINTEXT://127.0.0.1:19091"]
    assert config.inter_broker_listener == "PLAINTEXT"
    assert str(config.advertised) == "127.0.0.1:19091"


def test_missing_required_keys():
    with pytest.raises(ConfigError, match="node.id is required"):
        load_config(None, environ={"RAFTLOG_CONTROLLER_QUORUM_VOTERS": VOTERS, "RAFTLOG_LOG_DIRS": "/d"})


def test_missing_config_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("node.id = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})


def test_unrelated_raftlog_env_vars_are_ignored():
    config = load_config(None, environ=base_env(RAFTLOG_BOOTSTRAP_SERVER="x:1"))
    assert config.node_id == 1


def test_dynamic_values_are_validated_and_canonical():
    assert parse_dynamic_value("unclean.leader.election.enable", "TRUE") == "true"
    assert parse_dynamic_value("log.cleanup.policy", "compact, delete") == "compact,delete"
    with pytest.raises(ConfigError, match="not a dynamic broker config"):
        parse_dynamic_value("node.id", "2")
    with pytest.raises(ConfigError, match="not a valid int"):
        parse_dynamic_value("log.retention.hours", "a week")
    with pytest.raises(ConfigError, match="subset of delete,compact"):
        parse_dynamic_value("log.cleanup.policy", "forever")


def test_node_ids_start_at_0_as_kafka_numbers_them():
    voters = "0@127.0.0.1:19091,1@127.0.0.1:19092,2@127.0.0.1:19093"
    config = load_config(
        None,
        environ={
            "RAFTLOG_NODE_ID": "0",
            "RAFTLOG_CONTROLLER_QUORUM_VOTERS": voters,
            "RAFTLOG_LOG_DIRS": "/tmp/raftlog-x",
        },
    )
    assert config.node_id == 0 and sorted(config.voters) == [0, 1, 2]
    with pytest.raises(ConfigError, match="node.id -1"):
        load_config(None, environ=base_env(RAFTLOG_NODE_ID="-1"), overrides=["controller.quorum.voters=" + voters])


def test_roles_a_broker_only_observer_and_a_controller_only_voter():
    broker = load_config(None, environ=base_env(), overrides=["node.id=7", "process.roles=broker", "listeners=n7:9092"])
    assert broker.roles == ["broker"] and broker.node_id not in broker.voters
    assert str(broker.advertised) == "n7:9092"  # the address it gives the leader, which answers it there
    controller = load_config(None, environ=base_env(), overrides=["process.roles=controller"])
    assert controller.roles == ["controller"] and controller.node_id in controller.voters
