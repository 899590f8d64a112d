"""Property tests of the read API against its own OpenAPI document (schemathesis).

Every operation is called with generated requests, valid and invalid, over real Redis and
PostgreSQL, with API keys required. Every answer must match the document (status codes,
content types, headers, bodies); none may be a server error; valid requests must not be
refused, invalid ones must not be accepted, and requests without a valid key must be.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from api.app import create_app
from api.keys import create_api_key
from api.settings import ApiSettings
from sinks.migrations import apply_migrations
from triage.services import LocalPostgres, LocalRedis

pytestmark = pytest.mark.integration

ANALYTICS_SQL = Path(__file__).resolve().parents[2] / "sql" / "analytics"
# Per operation and mode. The document has ten operations, so the run makes about 400
# requests and stays well under a minute on two cores.
EXAMPLES = 20


def _operations() -> list[tuple[str, str, bool]]:
    # The document does not depend on the stores: an app that never starts lists them.
    app = create_app(ApiSettings(redis_url="redis://unused", analytics_dsn="dbname=unused"))
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return [
        (path, method, bool(op.get("parameters") or op.get("requestBody")))
        for path, item in sorted(paths.items())
        for method, op in sorted(item.items())
    ]


@dataclass(frozen=True)
class SchemaUnderTest:
    schema: Any
    key: str


@pytest.fixture(scope="module")
def api_schema(postgres: LocalPostgres, redis_server: LocalRedis) -> Iterator[SchemaUnderTest]:
    dsn = postgres.create_database(f"schema_{uuid.uuid4().hex[:8]}")
    apply_migrations(dsn, ANALYTICS_SQL)
    apply_migrations(dsn, ANALYTICS_SQL.parent / "source", schema="public")  # work_outcomes
    with psycopg.connect(dsn, autocommit=True) as conn:
        _, key = create_api_key(
            conn, name="schemathesis", scopes=["admin"], rate_limit_per_minute=1_000_000
        )
    api = ApiSettings(
        redis_url=redis_server.url,
        analytics_dsn=dsn,
        key_prefix=f"schema{uuid.uuid4().hex[:6]}",
        auth_required=True,
        outcomes_dsn=dsn,
    )
    # Credentials through schemathesis' own configuration, so that its authentication
    # checks know which headers carry them and can try requests without them.
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {"auth": {"openapi": {"APIKeyHeader": {"api_key": key}, "HTTPBearer": {"bearer": key}}}}
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(api), config=config)
    yield SchemaUnderTest(schema, key)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("path", "method", "has_parameters"), _operations())
def test_operation_conforms_to_the_openapi_document(
    api_schema: SchemaUnderTest, path: str, method: str, has_parameters: bool, mode: GenerationMode
) -> None:
    if mode is GenerationMode.NEGATIVE and not has_parameters:
        pytest.skip("no parameters to make invalid")
    operation = api_schema.schema[path][method.upper()]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        statuses.append(case.call_and_validate().status_code)

    statuses: list[int] = []
    check()
    # The key was sent: the checks above ran against answers, not against 401s.
    if mode is GenerationMode.POSITIVE:
        assert 401 not in statuses
        assert any(200 <= s < 300 or s == 404 for s in statuses)
