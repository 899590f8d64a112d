"""The JVM parts are pinned once and the compose images match them; missing jars fail loudly."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from triage.kafka_local import JVM_DIR, jvm_classpath
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
