"""Registering the Debezium connector with Kafka Connect's REST API (production path).

The connector's configuration lives in ``infra/debezium/helpdesk-connector.json``. It is
applied with ``PUT /connectors/<name>/config``, which creates or updates, so running the
registration twice is harmless.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

REQUIRED = ("connector.class", "plugin.name", "topic.prefix", "publication.name", "slot.name")


class ConnectError(RuntimeError):
    """Kafka Connect refused the connector or could not be reached."""


def load_connector(
    path: Path, overrides: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """Read the connector file and apply overrides; returns (name, config).

    Raises:
        ConnectError: the file lacks a name or a required setting.
    """
    document = json.loads(path.read_text())
    name = document.get("name")
    config = {str(k): str(v) for k, v in (document.get("config") or {}).items()}
    config.update(overrides or {})
    if not name:
        raise ConnectError(f"{path}: connector file has no 'name'")
    missing = [key for key in REQUIRED if key not in config]
    if missing:
        raise ConnectError(f"{path}: missing settings {', '.join(missing)}")
    if config["plugin.name"] != "pgoutput":
        raise ConnectError("plugin.name must be pgoutput (no server extension needed)")
    return str(name), config


def register_connector(
    connect_url: str,
    name: str,
    config: Mapping[str, str],
    *,
    client: httpx.Client | None = None,
    wait_running: float = 60.0,
) -> dict[str, Any]:
    """Create or update the connector and wait until its task is RUNNING.

    Returns the connector's status document.
    """
    own = client is None
    http = client or httpx.Client(base_url=connect_url, timeout=10.0)
    try:
        resp = http.put(f"/connectors/{name}/config", json=dict(config))
        if resp.status_code >= 400:
            raise ConnectError(f"Kafka Connect rejected {name}: {resp.status_code} {resp.text}")
        deadline = time.monotonic() + wait_running
        delay = 0.2
        while True:
            status = http.get(f"/connectors/{name}/status")
            if status.status_code == 200:
                body = status.json()
                tasks = body.get("tasks") or []
                if (
                    body.get("connector", {}).get("state") == "RUNNING"
                    and tasks
                    and all(t.get("state") == "RUNNING" for t in tasks)
                ):
                    return dict(body)
                failed = [t for t in tasks if t.get("state") == "FAILED"]
                if failed:
                    raise ConnectError(f"connector task failed: {failed[0].get('trace', '')[:500]}")
            if time.monotonic() > deadline:
                raise ConnectError(f"connector {name} not RUNNING after {wait_running:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    except httpx.HTTPError as exc:
        raise ConnectError(
            f"cannot reach Kafka Connect at {connect_url} ({exc}); set TRIAGE_KAFKA__CONNECT_URL"
        ) from exc
    finally:
        if own:
            http.close()
