"""The pipeline and the API pick their search store from ElasticsearchSettings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from sinks.search_es import ElasticsearchSearchSink
from sinks.search_pg import PostgresSearchSink
from triage.runtime import Stack, api_settings, build_pipeline
from triage.settings import AppSettings, ElasticsearchSettings

STACK = Stack(
    source_dsn="postgresql://triage@127.0.0.1:1/source",
    analytics_dsn="postgresql://triage@127.0.0.1:1/analytics",
    redis_url="redis://127.0.0.1:1/0",
)


def _search_sink(settings: AppSettings, tmp_path: Path) -> Any:
    flow = build_pipeline(settings, STACK, tmp_path / "recovery")
    sinks = {s.step_id.split(".")[-1]: s.sink for s in flow.substeps if hasattr(s, "sink")}
    return sinks.get("write_search")


def test_embedded_default_indexes_into_postgres(tmp_path: Path) -> None:
    sink = _search_sink(AppSettings(state_dir=tmp_path), tmp_path)
    assert isinstance(sink, PostgresSearchSink)
    assert sink._dsn == STACK.analytics_dsn and sink._allow_pii is False


def test_elasticsearch_when_its_url_is_set(tmp_path: Path) -> None:
    es = ElasticsearchSettings(
        url="http://es:9200", api_key=SecretStr("k"), index_prefix="acme", allow_pii=True
    )
    sink = _search_sink(AppSettings(state_dir=tmp_path, elasticsearch=es), tmp_path)
    assert isinstance(sink, ElasticsearchSearchSink)
    assert (sink._url, sink._api_key, sink._prefix, sink._allow_pii) == (
        "http://es:9200",
        "k",
        "acme",
        True,
    )
    api = api_settings(AppSettings(elasticsearch=es), STACK)
    assert (api.elasticsearch_url, api.search_index_prefix) == ("http://es:9200", "acme")
    assert api.elasticsearch_api_key is not None
    assert api.elasticsearch_api_key.get_secret_value() == "k"


def test_search_can_be_switched_off(tmp_path: Path) -> None:
    es = ElasticsearchSettings(enabled=False, url="http://es:9200")
    assert _search_sink(AppSettings(state_dir=tmp_path, elasticsearch=es), tmp_path) is None
    assert api_settings(AppSettings(elasticsearch=es), STACK).elasticsearch_url is None


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_ELASTICSEARCH__URL", "https://es.internal:9200")
    monkeypatch.setenv("TRIAGE_ELASTICSEARCH__API_KEY", "secret")
    monkeypatch.setenv("TRIAGE_ELASTICSEARCH__INDEX_PREFIX", "prod")
    monkeypatch.setenv("TRIAGE_ELASTICSEARCH__ALLOW_PII", "true")
    es = AppSettings().elasticsearch
    assert (es.url, es.index_prefix, es.allow_pii, es.enabled) == (
        "https://es.internal:9200",
        "prod",
        True,
        True,
    )
    assert "secret" not in repr(es)


@pytest.mark.parametrize("prefix", ["Prod", "-x", "_x", "a b", "a*b", ""])
def test_index_prefix_must_be_a_valid_index_name(prefix: str) -> None:
    with pytest.raises(ValidationError):
        ElasticsearchSettings(index_prefix=prefix)
