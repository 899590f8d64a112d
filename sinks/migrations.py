"""Apply numbered SQL migration files once each, recording them in a bookkeeping table.

Files are named ``NNN_description.sql`` and applied in numeric order. Each file runs in its
own transaction together with the row that records it, so a failed file leaves nothing
half-applied and is retried on the next run. A file whose content changed after it was
applied is refused: editing history silently would make databases drift apart.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from models.codecs import ANALYTICS_SCHEMA

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(?P<number>\d+)_[\w.-]+\.sql$")


class MigrationError(RuntimeError):
    """A migration directory or an applied migration is inconsistent."""


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file.

    Attributes:
        number: The numeric prefix that orders the files.
        version: The file name without ``.sql``; the key recorded in the bookkeeping table.
        path: Where the file lives.
        checksum: SHA-256 of the file content.
        content: The SQL, read once so that what runs is what was checksummed.
    """

    number: int
    version: str
    path: Path
    checksum: str
    content: bytes = field(repr=False)


def discover_migrations(directory: Path | str) -> list[Migration]:
    """List the numbered ``.sql`` files of ``directory`` in the order they must run.

    Args:
        directory: Folder holding ``NNN_description.sql`` files.

    Returns:
        The migrations sorted by number.

    Raises:
        MigrationError: When the folder is missing or two files share a number.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise MigrationError(f"migration directory {folder} does not exist")
    found: dict[int, Migration] = {}
    for path in folder.glob("*.sql"):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            log.warning("ignoring %s: name is not NNN_description.sql", path)
            continue
        number = int(match["number"])
        if number in found:
            raise MigrationError(
                f"migrations {found[number].path.name} and {path.name} share number {number}"
            )
        content = path.read_bytes()
        found[number] = Migration(
            number=number,
            version=path.stem,
            path=path,
            checksum=hashlib.sha256(content).hexdigest(),
            content=content,
        )
    return [found[n] for n in sorted(found)]


def apply_migrations(
    dsn: str,
    directory: Path | str,
    *,
    schema: str = ANALYTICS_SCHEMA,
    table: str = "schema_migrations",
    connect_timeout: int = 10,
) -> list[str]:
    """Apply every migration of ``directory`` not yet recorded in ``schema.table``.

    Safe to call on every start and from several processes at once: an advisory lock
    serialises concurrent runners, and already applied files are skipped.

    Args:
        dsn: libpq connection string of the target database.
        directory: Folder holding ``NNN_description.sql`` files.
        schema: Schema of the bookkeeping table (created when missing).
        table: Name of the bookkeeping table with ``(version, applied_at, checksum)``.
        connect_timeout: Seconds to wait for the connection.

    Returns:
        The versions applied by this call, in order (empty when up to date).

    Raises:
        MigrationError: When an applied file has changed since it was applied.
        psycopg.Error: When a migration's SQL fails; that file is rolled back.
    """
    migrations = discover_migrations(directory)
    target = sql.Identifier(schema, table)
    # One lock per bookkeeping table, so source and analytics migrations do not block
    # each other while two runners of the same set do.
    lock_key = f"migrations:{schema}.{table}"
    applied_now: list[str] = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_key,))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " version text PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now(),"
                    " checksum text NOT NULL)"
                ).format(target)
            )
        for migration in migrations:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_key,))
                row = conn.execute(
                    sql.SQL("SELECT checksum FROM {} WHERE version = %s").format(target),
                    (migration.version,),
                ).fetchone()
                if row is not None:
                    if row[0] != migration.checksum:
                        raise MigrationError(
                            f"{migration.path} changed after it was applied to {schema}.{table}; "
                            "add a new numbered file instead of editing an applied one"
                        )
                    continue
                log.info("applying migration %s", migration.path)
                # Without parameters psycopg sends the file as one simple query, which
                # allows the several statements a migration file holds.
                conn.execute(migration.content)
                conn.execute(
                    sql.SQL("INSERT INTO {} (version, checksum) VALUES (%s, %s)").format(target),
                    (migration.version, migration.checksum),
                )
                applied_now.append(migration.version)
    return applied_now
