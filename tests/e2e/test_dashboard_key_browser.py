"""The dashboard page with auth on, in headless Chromium: without a key it asks for one;
a key given in the address fragment loads every panel, is sent only as a header and is
not remembered beyond the browser session; ``?key=`` is ignored.

Skipped without Chromium like ``test_dashboard_browser.py`` (whose launcher it reuses).
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from api.app import create_app
from api.keys import create_api_key
from api.panels import PANELS
from api.settings import ApiSettings
from sinks.migrations import apply_migrations
from tests.e2e.test_dashboard_browser import _chromium
from triage.runtime import SQL_DIR
from triage.services import free_port, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def secured(pg_dsn: str, redis_url: str, unique: str) -> Iterator[tuple[str, str]]:
    """A server requiring keys, and a key with read:analytics."""
    import uvicorn

    apply_migrations(pg_dsn, SQL_DIR / "analytics")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        _, key = create_api_key(conn, name="dashboard", scopes=["read:analytics"])
    settings = ApiSettings(
        redis_url=redis_url, analytics_dsn=pg_dsn, key_prefix=f"t{unique}", auth_required=True
    )
    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_until(lambda: srv.started, timeout=30, what="API server")
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _dom(url: str, profile: Path) -> str:
    """The page's DOM once every fetch was answered, in a browser profile kept on disk."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--no-first-run"]  # fmt: skip
    args = [_chromium(), *flags, f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
    args += ["--dump-dom", url]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _loaded(dom: str) -> int:
    found = re.search(r'<body[^>]*data-loaded="(\d+)"', dom)
    return int(found.group(1)) if found else 0


def test_page_sends_the_key_from_the_fragment_only_in_a_header(
    secured: tuple[str, str], tmp_path: Path
) -> None:
    server, key = secured
    profile = tmp_path / "profile"
    without = _dom(f"{server}/dashboard", profile)
    assert "cannot list panels: HTTP 401 (enter an API key with read:analytics)" in without
    assert 'id="key-form"' in without and 'type="password"' in without
    assert _loaded(without) == 0

    # The fragment never reaches the server; the page sends the key as X-API-Key.
    with_key = _dom(f"{server}/dashboard?range=7d#key={key}", profile)
    assert _loaded(with_key) == len(PANELS)
    assert key not in with_key

    # A key in the query string is not used, and a new browser session (same profile) has
    # forgotten the key: it lived in this tab's sessionStorage only.
    assert _loaded(_dom(f"{server}/dashboard?key={key}", profile)) == 0
    assert _loaded(_dom(f"{server}/dashboard", profile)) == 0
