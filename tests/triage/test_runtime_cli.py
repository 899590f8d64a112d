"""The pipeline command's cluster options and the per-ticket owner step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from models.events import ChangeEvent, SourcePosition
from models.sla import TicketComment
from pipelines.flow import UNOWNED, CommentIn, make_owner_step
from triage.cli import app
from triage.settings import ClusterSettings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _ticket(status: str, customer: int = 4, op: str = "u", version: int = 1) -> ChangeEvent:
    row = {"id": 9, "customer_id": customer, "status": status}
    return ChangeEvent(
        "tickets",
        op,
        {"id": 9},
        None,
        row,
        T0,
        version,
        SourcePosition(lsn=version),  # type: ignore[arg-type]
    )


def _comment(version: int) -> CommentIn:
    return CommentIn(TicketComment(9, T0, "agent"), "hi", _ticket("open", version=version))


def test_the_owner_step_sends_a_tickets_items_to_its_customer_until_it_is_closed() -> None:
    step = make_owner_step(timedelta(0))
    comment = _comment(1)
    assert step(None, comment) == (None, [(UNOWNED, comment)])
    state, out = step(None, _ticket("open"))
    assert state is not None and state.customer == 4 and out[0][0] == "4"
    assert step(state, comment)[1] == [("4", comment)]
    moved, out = step(state, _ticket("open", customer=5))  # the ticket moved customer
    assert moved is not None and moved.customer == 5 and out[0][0] == "5"
    assert step(moved, _ticket("closed", customer=5))[0] is None


def test_with_a_reorder_window_items_leave_in_commit_order() -> None:
    step = make_owner_step(timedelta(seconds=1))
    later_comment, earlier_change = _comment(20), _ticket("pending", version=10)
    state, out = step(None, later_comment)  # arrived first, committed later
    assert out == []
    state, out = step(state, earlier_change)
    assert out == [] and state is not None
    wake = state.next_wakeup()
    assert wake is not None
    released = state.tick(wake)
    assert [item for _, item in released] == [earlier_change, later_comment]
    assert released[1][0] == "4"  # the comment follows its ticket's customer
    # Something older than what already left goes at once.
    late = _comment(15)
    assert step(state, late)[1] == [("4", late)]


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
        app,
        ["pipeline", "--state-dir", str(tmp_path), "-a", "h:1;h:2", "-i", "0", "--processes", "2"],
    )
    assert both.exit_code == 1 and "either --processes" in both.output
    bench = runner.invoke(app, ["bench", "--processes", "1,x"])
    assert bench.exit_code == 2 and "--processes takes counts" in bench.output
