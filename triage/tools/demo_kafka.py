"""The main job on the production inbound path: Debezium in Kafka Connect → Kafka → pipeline.

``triage demo --cdc kafka`` runs the embedded demo (:func:`triage.tools.demo.run_demo`: the same
stores, workload, API and summary) with its pipeline in Kafka mode, fed by a local KRaft
broker and a Kafka Connect worker running the production Debezium connector
(:func:`triage.kafka_local.local_production_cdc`). The summary gains a ``kafka`` part: the
connector's state and the pipeline's consumer lag per topic.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from rich.console import Console

from triage.kafka_local import LocalCdcPath, TopicLag, local_production_cdc
from triage.runtime import migrate, open_stack
from triage.settings import AppSettings
from triage.signals import ignore_stop_signals, stop_signals_once
from triage.tools.demo import DemoOptions, run_demo

LAG_SETTLE_SECONDS = 15.0
"""How long the summary waits for the consumer lag to reach zero once every ticket is
routed (the durable position moves with each completed epoch; agents keep writing)."""


def run_kafka_demo(
    settings: AppSettings,
    opts: DemoOptions,
    console: Console,
    on_summary: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the demo with CDC through a local broker, Kafka Connect and Debezium.

    Local PostgreSQL and Redis start as in the embedded demo (unless their URLs are set);
    the schemas are applied first because the connector reads the publication they
    create. Everything started here stops on return, on Ctrl-C and on SIGTERM (which the
    CLI turns into Ctrl-C): the API and the pipeline first, then Connect, the broker and
    the local stores.

    Args:
        settings: Application settings; the CDC mode and brokers are set here.
        opts: As for the embedded demo.
        console: Where progress goes.
        on_summary: Sees the summary (with its ``kafka`` part) as soon as it is known.

    Returns:
        The embedded demo's summary plus ``kafka``.
    """
    root = settings.state_dir / "demo"
    if opts.fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    say = (lambda *_: None) if opts.quiet else console.print

    with stop_signals_once(), open_stack(settings, root / "services") as stack:
        migrate(stack)
        say("[bold]Kafka[/] starting a KRaft broker and Kafka Connect with Debezium")
        started = time.monotonic()
        with local_production_cdc(stack.source_dsn, root) as cdc:
            say(
                f"[bold]Kafka[/] broker={cdc.bootstrap} connect={cdc.connect.url} "
                f"connector {cdc.connector}: {cdc.connector_state()} "
                f"({time.monotonic() - started:.0f}s; logs in {cdc.kafka.state_dir.parent})"
            )
            run_settings = settings.model_copy(
                update={
                    "source": settings.source.model_copy(update={"dsn": stack.source_dsn}),
                    "analytics": settings.analytics.model_copy(update={"dsn": stack.analytics_dsn}),
                    "redis": settings.redis.model_copy(update={"url": stack.redis_url}),
                    "cdc": settings.cdc.model_copy(
                        update={"mode": "kafka", "topic_prefix": cdc.topic_prefix}
                    ),
                    "kafka": settings.kafka.model_copy(
                        update={"brokers": [cdc.bootstrap], "connect_url": cdc.connect.url}
                    ),
                }
            )
            # run_demo starts its pipeline as ``triage pipeline``, which reads its settings
            # from the environment it inherits.
            recovery_dir = settings.cluster.recovery_dir or root / "pipeline" / "recovery"
            flow_id = settings.pipeline.flow_id

            def with_kafka(summary: dict[str, Any]) -> None:
                summary["kafka"] = kafka_summary(cdc, settle_lag(cdc, recovery_dir, flow_id))
                if on_summary is not None:
                    on_summary(summary)
                if not opts.serve:
                    ignore_stop_signals()  # only the shutdown is left: let it finish

            with _inherited_env(cdc.pipeline_env()):
                return run_demo(
                    run_settings, replace(opts, fresh=False), console, on_summary=with_kafka
                )


def settle_lag(
    cdc: LocalCdcPath,
    recovery_dir: os.PathLike[str] | str,
    flow_id: str,
    *,
    timeout: float = LAG_SETTLE_SECONDS,
) -> TopicLag:
    """The consumer lag, polled until it is zero or ``timeout`` has passed."""
    from pathlib import Path

    deadline = time.monotonic() + timeout
    while True:
        lag = cdc.consumer_lag(Path(recovery_dir), flow_id=flow_id)
        if lag.total == 0 or time.monotonic() > deadline:
            return lag
        time.sleep(0.5)


def kafka_summary(cdc: LocalCdcPath, lag: TopicLag) -> dict[str, Any]:
    """The summary's ``kafka`` part."""
    return {
        "brokers": [cdc.bootstrap],
        "connect": cdc.connect.url,
        "connector": cdc.connector,
        "connector_state": cdc.connector_state(),
        "consumer_lag": lag.as_dict(),
    }


@contextlib.contextmanager
def _inherited_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for child processes started inside; restore them after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
