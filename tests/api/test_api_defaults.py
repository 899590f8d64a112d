"""Secure defaults of the read API, and the local demo's explicit exception to them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from api.app import create_app
from api.settings import ApiSettings
from triage.settings import AppSettings
from triage.tools.demo import AUTH_OFF_NOTICE, open_api_for_demo


def _settings(**changes: object) -> ApiSettings:
    return ApiSettings(redis_url="redis://x", analytics_dsn="dbname=x", **changes)  # type: ignore[arg-type]


def test_keys_are_required_unless_turned_off() -> None:
    assert _settings().auth_required is True
    assert AppSettings().api.auth_required is True


@pytest.mark.parametrize("enabled", [True, False])
def test_docs_and_metrics_are_behind_settings(enabled: bool) -> None:
    app = create_app(_settings(docs_enabled=enabled, metrics_enabled=enabled))
    client = TestClient(app)  # no lifespan: these routes touch no store
    expected = 200 if enabled else 404
    for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
        assert client.get(path).status_code == expected, path


def test_the_demo_turns_keys_off_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIAGE_API__AUTH_REQUIRED", raising=False)
    console = Console(record=True, width=200)
    demo = open_api_for_demo(AppSettings(), console, quiet=False)
    assert demo.api.auth_required is False
    assert AUTH_OFF_NOTICE in console.export_text()


def test_the_demo_prints_its_notice_to_stderr_in_json_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TRIAGE_API__AUTH_REQUIRED", raising=False)
    assert open_api_for_demo(AppSettings(), Console(), quiet=True).api.auth_required is False
    out, err = capsys.readouterr()
    assert out == "" and "API keys are off" in err


def test_the_demo_keeps_keys_when_they_are_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_API__AUTH_REQUIRED", "true")
    console = Console(record=True)
    assert open_api_for_demo(AppSettings(), console, quiet=False).api.auth_required is True
    assert console.export_text() == ""
