"""``triage bench api``: two API worker processes behind one port, under an open-loop load.

The command starts the production server (uvicorn workers building the app from the
environment), seeds routing decisions through the Redis sink, creates a key, and reports
what the load saw. A small, slow run: every request must be answered 200 by the workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.e2e


def test_bench_api_reads_every_decision_through_two_workers(
    pg_dsn: str, redis_url: str, tmp_path: Path, unique: str
) -> None:
    env = {
        **os.environ,
        "TRIAGE_SOURCE__DSN": pg_dsn,
        "TRIAGE_ANALYTICS__DSN": pg_dsn,
        "TRIAGE_REDIS__URL": redis_url,
        "TRIAGE_REDIS__KEY_PREFIX": f"t{unique}",
        "TRIAGE_STATE_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "triage",
            "bench",
            "api",
            "--rate",
            "80",
            "--seconds",
            "2",
            "--connections",
            "4",
            "--workers",
            "2",
            "--tickets",
            "40",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])["api"]
    assert report["workers"] == 2 and report["offered_rate_per_s"] == 80
    assert report["requests"] == 160
    assert report["status"] == {"200": 160} and report["errors"] == 0
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    # Each request was authenticated and audited by a worker.
    with psycopg.connect(pg_dsn) as conn:
        audited = conn.execute(
            "SELECT count(*) FROM analytics.api_audit WHERE path LIKE '/v1/tickets/%/routing'"
        ).fetchone()
    assert audited is not None and audited[0] >= 160
