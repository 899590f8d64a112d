"""Dashboard panels and the daily report read the analytics schema they are given."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from api.panels import PANELS
from api.reports import daily_stats

END = datetime(2026, 3, 2, 12, tzinfo=UTC)


def test_every_panel_reads_its_tables_from_the_given_schema() -> None:
    for panel in PANELS:
        query, _ = panel.bind(END - timedelta(days=1), END, schema="helpdesk_stats")
        assert "helpdesk_stats." in query, panel.id
        assert "analytics." not in query and "$SCHEMA" not in query, panel.id
        assert "analytics." in panel.grafana_sql()  # the default schema


@pytest.mark.parametrize("schema", ["Analytics", "a; DROP TABLE x", "", "1st"])
def test_a_schema_that_is_not_a_plain_identifier_is_refused(schema: str) -> None:
    with pytest.raises(ValueError, match="plain SQL identifier"):
        PANELS[0].bind(END - timedelta(hours=1), END, schema=schema)
    with pytest.raises(ValueError, match="plain SQL identifier"):
        daily_stats(None, date(2026, 3, 2), schema=schema)  # type: ignore[arg-type]
