"""The JVM parts are pinned once and the compose images match them; missing jars fail loudly."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from connectors.kafka_connect import load_connector
from triage.kafka_local import (
    CONNECTOR_FILE,
    JVM_DIR,
    LocalKafka,
    ensure_topics,
    jvm_classpath,
    local_connector_overrides,
)
from triage.services import ServiceError

pytestmark = pytest.mark.real_kafka

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
ENV_FILE = JVM_DIR.parent / ".env"


def _pom_property(name: str) -> str:
    root = ET.parse(JVM_DIR / "pom.xml").getroot()
    node = root.find(f"m:properties/m:{name}", _POM_NS)
    assert node is not None and node.text, name
    return node.text


def _image_tag(variable: str) -> str:
    match = re.search(rf"^{variable}=\S+:(\S+)$", ENV_FILE.read_text(), re.MULTILINE)
    assert match, variable
    return match.group(1)


def test_compose_images_run_the_versions_the_tests_run() -> None:
    assert _image_tag("KAFKA_IMAGE") == _pom_property("version.kafka")
    assert _image_tag("CONNECT_IMAGE") == _pom_property("version.debezium")


def test_fetched_jars_are_the_pinned_versions(jvm_ready: str) -> None:
    lib = Path(jvm_ready.removesuffix("/*"))
    kafka, debezium = _pom_property("version.kafka"), _pom_property("version.debezium")
    for jar in (
        f"kafka_2.13-{kafka}.jar",
        f"connect-runtime-{kafka}.jar",
        f"kafka-clients-{kafka}.jar",
        f"debezium-connector-postgres-{debezium}.jar",
    ):
        assert (lib / jar).exists(), f"{jar} missing in {lib}: run `make setup`"


def test_missing_jars_name_the_setup_command(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="make setup"):
        jvm_classpath(tmp_path)


def test_local_overrides_take_the_database_from_the_dsn(tmp_path: Path) -> None:
    secrets = tmp_path / "helpdesk.properties"
    overrides = local_connector_overrides(
        "postgresql://helpdesk:s3cret@127.0.0.1:6543/support",
        secrets,
        slot_name="slot_a",
        extra={"heartbeat.interval.ms": "1000"},
    )
    assert overrides["database.hostname"] == "127.0.0.1"
    assert (overrides["database.port"], overrides["database.dbname"]) == ("6543", "support")
    assert overrides["database.password"] == f"${{file:{secrets}:password}}"
    assert (overrides["slot.name"], overrides["heartbeat.interval.ms"]) == ("slot_a", "1000")
    assert secrets.read_text() == "user=helpdesk\npassword=s3cret\n"
    assert secrets.stat().st_mode & 0o077 == 0
    # What is left is the production file's, and it passes the registration checks.
    name, config = load_connector(CONNECTOR_FILE, overrides)
    assert name == "triage-helpdesk" and config["decimal.handling.mode"] == "string"
    with pytest.raises(ServiceError, match="TCP host"):
        local_connector_overrides("host=/run/postgresql dbname=x user=u", secrets, slot_name="s")


def test_ensure_topics_creates_only_the_missing_ones(kafka_broker: LocalKafka) -> None:
    topics = [f"rk_{uuid.uuid4().hex[:8]}.public.tickets", f"rk_{uuid.uuid4().hex[:8]}.x"]
    assert ensure_topics(kafka_broker.bootstrap, topics, partitions=2) == topics
    assert ensure_topics(kafka_broker.bootstrap, topics) == []
