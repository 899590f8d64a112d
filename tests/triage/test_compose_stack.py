"""The production compose stack, read as an operator would run it (no Docker daemon here).

The compose file is parsed with its variables substituted as ``docker compose`` does
(``infra/.env`` for versions, a fake secrets file for the secrets), and checked for what
makes a stack start, heal and stay locked down: an image for every service, restart
policies, healthchecks, one-shot set-up steps the pipeline waits for, named volumes for
state, no published ports but the API and Grafana, no default secrets, and image versions
equal to the ones the tests run (``infra/jvm/pom.xml``).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.kafka_config import CDC_TOPIC_CONFIG, topic_specs
from connectors.kafka_connect import load_connector

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "docker-compose.yml"
DOCKERFILE = INFRA / "docker" / "Dockerfile"

ONE_SHOTS = {"kafka-topics", "connector", "migrate", "elasticsearch-users"}
PUBLISHED = {"api", "grafana"}
APP_SERVICES = {"pipeline", "api", *ONE_SHOTS - {"elasticsearch-users"}}
STATEFUL = {
    "helpdesk-db": "/var/lib/postgresql/data",
    "kafka": "/var/lib/kafka/data",
    "timescaledb": "/var/lib/postgresql/data",
    "elasticsearch": "/usr/share/elasticsearch/data",
    "redis": "/data",
    "pipeline": "/state",
    "grafana": "/var/lib/grafana",
}

_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def secret_names() -> list[str]:
    """The secrets infra/make-secrets.sh generates."""
    script = (INFRA / "make-secrets.sh").read_text()
    block = script.split("for name in", 1)[1].split("; do", 1)[0]
    return block.replace("\\", " ").split()


def interpolate(text: str, env: dict[str, str]) -> str:
    """Substitute ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` as compose does."""

    def value(match: re.Match[str]) -> str:
        name, op = match["name"], match["op"]
        if env.get(name):
            return env[name]
        if op == ":-":
            return match["arg"]
        if op == ":?":
            raise KeyError(f"{name}: {match['arg']}")
        return ""

    # $$ is a literal dollar for the container's shell.
    return _VAR.sub(value, text.replace("$$", "\0")).replace("\0", "$")


def substitute(node: Any, env: dict[str, str]) -> Any:
    """Interpolate every string of the parsed file (compose interpolates values, not
    comments)."""
    if isinstance(node, dict):
        return {key: substitute(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


def strings(node: Any) -> list[str]:
    """Every string value of the parsed file."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def raw_document() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def variables() -> list[re.Match[str]]:
    return [m for text in strings(raw_document()) for m in _VAR.finditer(text)]


def compose(env: dict[str, str]) -> dict[str, Any]:
    return substitute(raw_document(), env)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return {
        **_env_file(INFRA / ".env"),
        **{name: f"fake-{name.lower()}" for name in secret_names()},
    }


@pytest.fixture(scope="module")
def services(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    return compose(env)["services"]


def _command(service: dict[str, Any]) -> str:
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts.append(" ".join(value) if isinstance(value, list) else str(value))
    return " ".join(parts)


def test_every_required_variable_is_a_generated_secret_or_a_pinned_version(
    env: dict[str, str],
) -> None:
    found = variables()
    required = {m["name"] for m in found if m["op"] == ":?"}
    versions = _env_file(INFRA / ".env")
    assert required <= set(secret_names()), required - set(secret_names())
    assert {"REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "ELASTIC_PASSWORD"} <= required
    # Every plain ${VAR} is a pinned version from infra/.env.
    plain = {m["name"] for m in found if m["op"] is None}
    assert plain <= set(versions), plain - set(versions)
    # Without the secrets file compose refuses to start.
    with pytest.raises(KeyError, match="PASSWORD"):
        compose(versions)


def test_no_secret_has_a_default_or_a_literal_value() -> None:
    for match in variables():
        if re.search("PASSWORD|SECRET|TOKEN|API_KEY", match["name"]):
            assert match["op"] == ":?", f"{match['name']} must be required, not defaulted"
    raw = COMPOSE.read_text()
    for name, service in raw_document()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD$|REDISCLI_AUTH", key):
                assert str(value).startswith("${"), f"{name}.{key} is a literal secret"
    assert "admin/admin" not in raw
    assert 'xpack.security.enabled: "false"' not in raw


def test_every_service_has_an_image_and_a_restart_policy(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        if name in ONE_SHOTS:
            assert service["restart"] == "on-failure", name
        else:
            assert service["restart"] in ("unless-stopped", "always"), name


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    long_running = set(services) - ONE_SHOTS
    assert {"pipeline", "api", "grafana", "connect", "kafka", "redis"} <= long_running
    for name in long_running:
        test = services[name].get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"


def test_pipeline_health_is_its_metrics_endpoint(services: dict[str, dict[str, Any]]) -> None:
    pipeline = services["pipeline"]
    port = pipeline["environment"]["TRIAGE_METRICS__PORT"]
    assert pipeline["environment"]["TRIAGE_METRICS__HOST"] == "0.0.0.0"
    assert f"127.0.0.1:{port}/metrics" in " ".join(pipeline["healthcheck"]["test"])
    assert "/api/health" in " ".join(services["grafana"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["api"]["healthcheck"]["test"])


def test_application_services_run_the_built_image_and_install_nothing(
    services: dict[str, dict[str, Any]],
) -> None:
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1, images
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"]["dockerfile"] == "infra/docker/Dockerfile"
        assert (INFRA / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert "working_dir" not in service
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert not source.startswith((".", "/")), f"{name} bind-mounts {source}"
    for name, service in services.items():
        command = _command(service)
        assert "pip install" not in command and "uv sync" not in command, name


def test_only_the_api_and_grafana_are_published(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        ports = service.get("ports") or []
        if name in PUBLISHED:
            assert ports, name
        for port in ports:
            assert name in PUBLISHED or str(port).startswith("127.0.0.1:"), f"{name}: {port}"
    assert "ports" not in services["connect"]
    assert "ports" not in services["timescaledb"]


def test_stateful_services_keep_their_data_on_named_volumes(env: dict[str, str]) -> None:
    document = compose(env)
    named = set(document["volumes"])
    for name, target in STATEFUL.items():
        mounts = [v.split(":") for v in document["services"][name].get("volumes", [])]
        assert any(src in named and dst == target for src, dst, *_ in mounts), (name, mounts)


def test_pipeline_waits_for_topics_connector_schemas_and_stores(
    services: dict[str, dict[str, Any]],
) -> None:
    depends = services["pipeline"]["depends_on"]
    for step in ONE_SHOTS:
        assert depends[step]["condition"] == "service_completed_successfully", step
    for store in ("timescaledb", "redis", "elasticsearch"):
        assert depends[store]["condition"] == "service_healthy", store
    assert "--no-migrate" in services["pipeline"]["command"]
    assert services["connect"]["depends_on"]["kafka-topics"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["connector"]["depends_on"]["connect"]["condition"] == "service_healthy"


def test_connector_registration_uses_the_repository_file_and_its_secret_path(
    services: dict[str, dict[str, Any]],
) -> None:
    command = services["connector"]["command"]
    assert command[:2] == ["connect", "register"]
    path = command[command.index("--connector") + 1]
    _, config = load_connector(ROOT / path)
    entry = _command(services["connect"])
    # The entrypoint writes the file the connector's config provider reads, in the image
    # user's own home, never a root-owned directory.
    secret_file = re.search(r"\$\{file:([^:]+):user\}", config["database.user"])
    assert secret_file is not None
    assert f"> {secret_file[1]}" in entry
    assert secret_file[1].startswith("/kafka/")
    assert "/opt/" not in entry
    assert "user=triage_cdc" in entry


def test_image_versions_match_the_jvm_build_the_tests_run(env: dict[str, str]) -> None:
    pom = ET.parse(INFRA / "jvm" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = pom.find("m:properties", ns)
    assert props is not None
    kafka = props.findtext("m:version.kafka", namespaces=ns)
    debezium = props.findtext("m:version.debezium", namespaces=ns)
    assert env["KAFKA_IMAGE"].rsplit(":", 1)[1] == kafka
    assert env["CONNECT_IMAGE"].rsplit(":", 1)[1] == debezium
    # The envelopes the project writes itself claim the same Debezium release.
    from connectors.debezium import DEBEZIUM_VERSION

    assert debezium == DEBEZIUM_VERSION


def test_topics_service_creates_compacted_cdc_and_alerts_topics(
    services: dict[str, dict[str, Any]],
) -> None:
    from typer.testing import CliRunner

    from triage.cli import app

    command = services["kafka-topics"]["command"]
    assert command == ["kafka", "create-topics"]
    assert CliRunner().invoke(app, [*command, "--help"]).exit_code == 0
    specs = topic_specs(["triage.public.tickets"], alerts_topic="triage.alerts")
    assert all(s.config["cleanup.policy"] == "compact" for s in specs)
    assert CDC_TOPIC_CONFIG["retention.ms"] == "-1"


def test_stores_require_credentials(services: dict[str, dict[str, Any]]) -> None:
    assert services["elasticsearch"]["environment"]["xpack.security.enabled"] == "true"
    assert "--requirepass" in _command(services["redis"])
    for name in ("pipeline", "api"):
        environment = services[name]["environment"]
        assert re.match(r"redis://:[^@]+@", environment["TRIAGE_REDIS__URL"]), name
        assert re.match(r"http://\w+:[^@]+@", environment["TRIAGE_ELASTICSEARCH__URL"]), name
    # Least privilege: neither the pipeline nor the API logs in as a database owner.
    assert "//triage_pipeline:" in services["pipeline"]["environment"]["TRIAGE_ANALYTICS__DSN"]
    assert "//triage_api:" in services["api"]["environment"]["TRIAGE_ANALYTICS__DSN"]
    assert "//triage:" in services["migrate"]["environment"]["TRIAGE_ANALYTICS__DSN"]
    datasource = yaml.safe_load(
        (INFRA / "grafana" / "provisioning" / "datasources" / "analytics.yml").read_text()
    )["datasources"][0]
    assert datasource["user"] == "triage_bi"
    password_var = datasource["secureJsonData"]["password"].strip("${}")
    assert password_var in services["grafana"]["environment"]
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("fake-")


def test_dockerfile_is_multi_stage_frozen_and_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 3
    assert re.search(r"uv sync --frozen --no-dev", text)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    for source in re.findall(r"^COPY (?!--)(\S+)", text, re.M):
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("uv.lock", "sql", "triage", "infra/debezium"):
        assert needed not in ignored


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_application_services_environment_is_valid_settings(
    name: str, services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from triage.settings import AppSettings

    for key in [k for k in os.environ if k.startswith("TRIAGE_")]:
        monkeypatch.delenv(key)
    for key, value in (services[name].get("environment") or {}).items():
        monkeypatch.setenv(key, str(value))
    settings = AppSettings()
    if name in ("pipeline", "kafka-topics"):
        assert settings.cdc.mode == "kafka" and settings.publishes_alerts
        assert settings.kafka.brokers == ["kafka:9092"]
    if name in ("pipeline", "api", "migrate"):
        # Every store is named: nothing falls back to a private local service (the image
        # has no PostgreSQL or Redis server to start).
        assert settings.source.dsn and settings.analytics.dsn and settings.redis.url
    if name in ("pipeline", "api"):
        assert settings.elasticsearch.url
    if name == "pipeline":
        assert settings.metrics.port == 9464 and settings.metrics.host == "0.0.0.0"
    if name == "api":
        assert settings.api.host == "0.0.0.0" and settings.api.auth_required


def test_dead_letters_have_their_own_topic_whenever_alerts_go_to_kafka(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from triage.settings import AppSettings

    specs = topic_specs([], alerts_topic="triage.alerts", dead_letter_topic="triage.dead_letters")
    dlq = next(s for s in specs if s.name == "triage.dead_letters")
    assert dlq.config["cleanup.policy"] == "delete"  # every dead letter kept, none compacted
    assert int(dlq.config["retention.ms"]) >= 7 * 24 * 3600 * 1000

    monkeypatch.setenv("TRIAGE_CDC__MODE", "kafka")
    assert AppSettings().dead_letter_topic == "triage.dead_letters"
    monkeypatch.setenv("TRIAGE_KAFKA__DEAD_LETTER_TOPIC", "")
    assert AppSettings().dead_letter_topic is None
    monkeypatch.setenv("TRIAGE_CDC__MODE", "embedded")
    monkeypatch.delenv("TRIAGE_KAFKA__DEAD_LETTER_TOPIC")
    assert AppSettings().dead_letter_topic is None  # embedded default: the store only
