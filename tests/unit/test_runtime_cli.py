"""The pipeline command's cluster options and the per-ticket owner step."""

from __future__ import annotations

from datetime import UTC, datetime

from typer.testing import CliRunner

from models.events import ChangeEvent, SourcePosition
from models.sla import TicketComment
from pipelines.flow import UNOWNED, CommentIn, owner_step
from triage.cli import app
from triage.settings import ClusterSettings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _ticket(status: str, customer: int = 4, op: str = "u") -> ChangeEvent:
    row = {"id": 9, "customer_id": customer, "status": status}
    return ChangeEvent("tickets", op, {"id": 9}, None, row, T0, 1, SourcePosition(lsn=1))  # type: ignore[arg-type]


def test_the_owner_step_sends_a_tickets_items_to_its_customer_until_it_is_closed() -> None:
    comment = CommentIn(TicketComment(9, T0, "agent"), "hi", _ticket("open"))
    assert owner_step(None, comment) == (None, [(UNOWNED, comment)])
    state, out = owner_step(None, _ticket("open"))
    assert state == 4 and out[0][0] == "4"
    assert owner_step(state, comment)[1] == [("4", comment)]
    moved, out = owner_step(state, _ticket("open", customer=5))  # ticket moved customer
    assert moved == 5 and out[0][0] == "5"
    assert owner_step(moved, _ticket("closed", customer=5))[0] is None


def test_cluster_sizes_follow_the_addresses_or_the_process_count() -> None:
    assert ClusterSettings(processes=3).total_workers == 3
    spread = ClusterSettings(addresses=["a:1", "b:1"], process_id=1, workers_per_process=2)
    assert (spread.total_processes, spread.total_workers) == (2, 4)


def test_the_pipeline_command_refuses_inconsistent_cluster_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    bad_id = runner.invoke(
        app, ["pipeline", "--state-dir", str(tmp_path), "-a", "h:1;h:2", "-i", "2"]
    )
    assert bad_id.exit_code == 1 and "--process-id must be one of 0..1" in bad_id.output
    both = runner.invoke(
        app, ["pipeline", "--state-dir", str(tmp_path), "-a", "h:1;h:2", "-i", "0",
              "--processes", "2"],
    )  # fmt: skip
    assert both.exit_code == 1 and "either --processes" in both.output
    bench = runner.invoke(app, ["bench", "--processes", "1,x"])
    assert bench.exit_code == 2 and "--processes takes counts" in bench.output
