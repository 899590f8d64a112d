"""Domain types shared by every layer: change events, dead letters and routing decisions.

These are frozen dataclasses so they can travel through the Bytewax dataflow and be
snapshotted by recovery. Nothing here performs I/O or imports a client library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Op = Literal["c", "u", "d", "r", "t"]
"""Debezium operation codes: create, update, delete, read (snapshot), truncate."""

OPS: frozenset[str] = frozenset({"c", "u", "d", "r", "t"})


@dataclass(frozen=True)
class SourcePosition:
    """Where a change came from: an LSN (embedded reader) or a Kafka coordinate.

    ``lsn`` is the PostgreSQL log sequence number of the change itself. Debezium's
    envelope carries it too (``source.lsn``), so it is the version used by every sink
    whichever path delivered the event.
    """

    lsn: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True)
class RawChange:
    """One undecoded CDC record exactly as a source delivered it.

    Both inbound paths produce this shape: the Kafka source from a Debezium topic and the
    embedded pgoutput reader, which serialises the same Debezium JSON envelope.
    ``value`` is ``None`` for a Kafka tombstone.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    position: SourcePosition = field(default_factory=SourcePosition)


@dataclass(frozen=True)
class ChangeEvent:
    """A decoded row change of one helpdesk table.

    ``version`` orders changes of the same row: it is the change's LSN. Sinks use it so
    that an older version never overwrites a newer one.
    """

    table: str
    op: Op
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    committed_at: datetime
    version: int
    position: SourcePosition
    txid: int | None = None
    snapshot: bool = False

    @property
    def row(self) -> dict[str, Any] | None:
        """The row as it is after this change (``before`` for deletes)."""
        return self.after if self.after is not None else self.before


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be processed, with the reason and the raw payload."""

    stage: str
    reason: str
    topic: str
    key: str | None
    payload: str | None
    position: SourcePosition
    failed_at: datetime
