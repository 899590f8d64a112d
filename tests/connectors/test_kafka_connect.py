"""Connector file validation and the registration exchange with Kafka Connect's REST API.

Kafka Connect (a JVM service) cannot run here, so the exchange is checked against an
httpx transport that answers as its documented REST API does.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from connectors.kafka_connect import ConnectError, load_connector, register_connector

CONNECTOR = Path(__file__).resolve().parents[2] / "infra" / "debezium" / "helpdesk-connector.json"


def test_repository_connector_file_is_valid_debezium_pgoutput() -> None:
    name, config = load_connector(CONNECTOR)
    assert name == "triage-helpdesk"
    assert config["plugin.name"] == "pgoutput"
    assert config["topic.prefix"] == "triage"
    assert config["decimal.handling.mode"] == "string"
    assert config["publication.name"] == "triage_cdc"
    assert int(config["heartbeat.interval.ms"]) > 0


def test_missing_settings_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"name": "x", "config": {"plugin.name": "pgoutput"}}))
    with pytest.raises(ConnectError, match=r"connector\.class"):
        load_connector(bad)


def test_register_puts_config_and_waits_for_running_tasks() -> None:
    calls: list[tuple[str, str]] = []
    polls = iter(["UNASSIGNED", "RUNNING"])

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path))
        if request.method == "PUT":
            assert json.loads(request.content)["plugin.name"] == "pgoutput"
            return httpx.Response(201, json={"name": "triage-helpdesk"})
        state = next(polls)
        return httpx.Response(
            200, json={"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": state}]}
        )

    name, config = load_connector(CONNECTOR)
    client = httpx.Client(base_url="http://connect", transport=httpx.MockTransport(handler))
    status = register_connector("http://connect", name, config, client=client, wait_running=10)
    assert status["tasks"][0]["state"] == "RUNNING"
    assert calls[0] == ("PUT", "/connectors/triage-helpdesk/config")
    assert calls[-1] == ("GET", "/connectors/triage-helpdesk/status")


def test_rejected_config_raises_with_the_reason() -> None:
    client = httpx.Client(
        base_url="http://connect",
        transport=httpx.MockTransport(lambda r: httpx.Response(400, text="bad slot.name")),
    )
    with pytest.raises(ConnectError, match=r"bad slot\.name"):
        register_connector("http://connect", "x", {"a": "b"}, client=client)
