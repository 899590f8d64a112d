"""The built-in dashboard rendered by a real browser (headless Chromium) over a seeded
history: every panel loads, and the screenshot shows the charts' series in each panel.

Chromium comes from Debian's ``chromium`` package (``make test`` installs it). Without
it the test is skipped locally and fails under CI, so CI never passes without rendering.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from api.panels import PANELS
from api.settings import ApiSettings
from triage.services import free_port, wait_until
from triage.tools.sample_analytics import SeedSummary

pytestmark = pytest.mark.e2e

END = "2026-03-02T00:00:00Z"
WINDOW = (1400, 2600)
# The page's series colours (PALETTE in api/static/dashboard.html).
PALETTE = [(0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28), (0x2C, 0xA0, 0x2C), (0xFF, 0x7F, 0x0E),
           (0x94, 0x67, 0xBD), (0x17, 0xBE, 0xCF)]  # fmt: skip


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = "headless Chromium not found: install Debian's chromium (make test does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(seeded_analytics: tuple[str, SeedSummary], redis_server: Any) -> Iterator[str]:
    import uvicorn

    dsn, _ = seeded_analytics
    app = create_app(
        ApiSettings(redis_url=redis_server.url, analytics_dsn=dsn, auth_required=False)
    )
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_until(lambda: srv.started, timeout=30, what="API server")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _browse(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    args = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # tests run as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        # Virtual time runs until the page is idle (every fetch answered), at most 20 s.
        "--virtual-time-budget=20000",
        *extra,
        url,
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _panels_in_dom(dom: str) -> dict[str, dict[str, str]]:
    panels: dict[str, dict[str, str]] = {}
    for tag in re.findall(r"<section [^>]*>", dom):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        panels[attrs["data-panel"]] = attrs
    return panels


def _series_pixels(image: Any, rect: tuple[int, int, int, int]) -> int:
    """Pixels within a panel's rectangle close to one of the series colours."""
    import numpy as np

    x, y, w, h = rect
    pixels = np.asarray(image.crop((x, y, x + w, y + h)).convert("RGB"), dtype=np.int16)
    near = np.zeros(pixels.shape[:2], dtype=bool)
    for colour in PALETTE:
        near |= np.abs(pixels - np.array(colour, dtype=np.int16)).sum(axis=2) < 60
    return int(near.sum())


def _render(server: str, tmp_path: Path, query: str) -> tuple[dict[str, dict[str, str]], Any]:
    from PIL import Image

    url = f"{server}/dashboard?{query}"
    dom = _browse(url, tmp_path, "--dump-dom").stdout
    shot = tmp_path / f"dashboard-{len(list(tmp_path.iterdir()))}.png"
    _browse(url, tmp_path, f"--screenshot={shot}")
    return _panels_in_dom(dom), Image.open(shot)


def _rect(attrs: dict[str, str]) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in attrs["data-rect"].split(","))
    return x, y, w, h


def test_dashboard_renders_every_panel_with_data(server: str, tmp_path: Path) -> None:
    panels, image = _render(server, tmp_path, f"range=7d&end={END}")
    assert image.size == WINDOW
    assert set(panels) == {p.id for p in PANELS}
    for panel in PANELS:
        attrs = panels[panel.id]
        assert attrs.get("data-state") == "ready", panel.id
        assert int(attrs["data-points"]) > 0, panel.id
        x, y, w, h = _rect(attrs)
        assert y + h <= WINDOW[1], f"{panel.id} is below the screenshot"
        if panel.format != "table":
            # A chart whose lines were drawn: hundreds of pixels in series colours.
            assert _series_pixels(image, (x, y, w, h)) > 300, panel.id


def test_empty_range_draws_no_series(server: str, tmp_path: Path) -> None:
    """The pixel check can fail: with no data in range, panels show a notice, no lines."""
    panels, image = _render(server, tmp_path, "range=1h&end=2020-01-01T00:00:00Z")
    for panel in PANELS:
        attrs = panels[panel.id]
        assert attrs.get("data-state") == "ready", panel.id
        assert attrs["data-points"] == "0", panel.id
        if panel.format != "table":
            assert _series_pixels(image, _rect(attrs)) < 20, panel.id
