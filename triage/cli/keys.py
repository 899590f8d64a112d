"""``triage api-keys``: create, list and revoke the read API's keys.

Keys live in ``analytics.api_keys`` as SHA-256 hashes; a new key is printed once, on
stdout, and cannot be shown again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from triage.cli.common import StateDir, console, load_settings
from triage.cli.common import fail as _fail

keys_app = typer.Typer(
    help="API keys of the read API (needed when TRIAGE_API__AUTH_REQUIRED=true).",
    no_args_is_help=True,
)


@contextmanager
def _analytics(state_dir: Path | None) -> Iterator[Any]:
    """A connection to the analytics database named by the TRIAGE_* settings."""
    import psycopg

    from triage.stack import open_stack

    settings = load_settings(state_dir)
    with open_stack(settings, settings.state_dir / "services") as stack:
        try:
            with psycopg.connect(stack.analytics_dsn, autocommit=True) as conn:
                yield conn
        except psycopg.errors.UndefinedTable as exc:
            raise _fail("analytics.api_keys does not exist: run `triage migrate` first") from exc


def _info(message: str) -> None:
    console.print(message)


def _when(at: datetime | None) -> str:
    return "" if at is None else f"{at:%Y-%m-%d %H:%M:%S}"


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="read:routing, read:tickets, read:analytics or admin; repeat for several.",
        ),
    ],
    rate_limit: Annotated[
        int, typer.Option("--rate-limit", min=1, help="Requests per minute.")
    ] = 600,
    state_dir: StateDir = None,
) -> None:
    """Create a key and print it once on stdout (only its hash is stored)."""
    from api.keys import create_api_key, parse_scopes

    try:
        scopes = parse_scopes(scope)
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    with _analytics(state_dir) as conn:
        record, key = create_api_key(
            conn, name=name, scopes=scopes, rate_limit_per_minute=rate_limit
        )
    _info(
        f"created {record.key_id} ({record.name}): {', '.join(record.scopes)}, "
        f"{record.rate_limit_per_minute}/min. Store the key now: it is not shown again."
    )
    sys.stdout.write(key + "\n")


@keys_app.command("list")
def list_keys(
    json_out: Annotated[bool, typer.Option("--json", help="Print only the JSON document.")] = False,
    state_dir: StateDir = None,
) -> None:
    """Every key with its scopes, limit and last use (never the key itself)."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from api.keys import list_api_keys

    with _analytics(state_dir) as conn:
        keys = list_api_keys(conn)
    if json_out:
        default: Callable[[Any], str] = lambda v: v.isoformat()  # noqa: E731
        sys.stdout.write(json.dumps([asdict(k) for k in keys], default=default) + "\n")
        return
    table = Table(title="API keys (times in UTC)")
    for column in ("key id", "name", "scopes", "limit/min", "created", "last used", "revoked"):
        table.add_column(column)
    for k in keys:
        table.add_row(
            k.key_id,
            k.name,
            " ".join(k.scopes),
            str(k.rate_limit_per_minute),
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
    Console().print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `triage api-keys list` shows.")],
    state_dir: StateDir = None,
) -> None:
    """Revoke a key; running APIs refuse it within their key cache TTL (5 s by default)."""
    from api.keys import revoke_api_key

    with _analytics(state_dir) as conn:
        record = revoke_api_key(conn, key_id=key_id)
    if record is None:
        raise _fail(f"no API key {key_id!r}")
    _info(f"{record.key_id} ({record.name}) revoked at {_when(record.revoked_at)} UTC")
