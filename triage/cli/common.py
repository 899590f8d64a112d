"""What every ``triage`` command group shares: the console, settings loading, errors.

The command groups (:mod:`triage.cli.commands`, :mod:`triage.cli.keys`) import from here,
never from each other.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

if TYPE_CHECKING:
    from triage.settings import AppSettings

console = Console(stderr=True)
"""Messages and errors go to stderr; stdout carries only results (JSON, keys)."""

StateDir = Annotated[
    Path | None, typer.Option(help="Where local services and pipeline state live.")
]


def load_settings(state_dir: Path | None = None) -> AppSettings:
    """The TRIAGE_* settings, or exit 2 with what is wrong; configures logging."""
    from triage.settings import AppSettings

    try:
        settings = AppSettings()
    except ValidationError as exc:
        console.print(f"[red]invalid TRIAGE_* setting:[/]\n{exc}")
        raise typer.Exit(2) from exc
    if state_dir is not None:
        settings = settings.model_copy(update={"state_dir": state_dir})
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return settings


def stop_on_sigterm() -> None:
    """SIGTERM (what supervisors send) stops a command as Ctrl-C does: its ``finally``
    blocks run, so child processes and private services are stopped, not orphaned."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error; returns the exit to raise."""
    console.print(f"[red]error:[/] {message}")
    return typer.Exit(code)
