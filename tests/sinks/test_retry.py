"""The sinks' retry loop: lost connections are retried, everything else is raised."""

from __future__ import annotations

import psycopg
import pytest

from sinks.retry import RetryPolicy, retry_connection_loss


def _run(outcomes: list[Exception | None], max_retries: int | None = 5) -> tuple[int, int]:
    attempts = losses = 0

    def attempt() -> None:
        nonlocal attempts
        outcome = outcomes[attempts]
        attempts += 1
        if outcome is not None:
            raise outcome

    def lost() -> None:
        nonlocal losses
        losses += 1

    retry_connection_loss(
        attempt,
        on_loss=lost,
        describe="test write",
        policy=RetryPolicy(initial_delay=0.0, max_delay=0.0, max_retries=max_retries),
    )
    return attempts, losses


def test_lost_connections_are_retried_until_the_write_succeeds() -> None:
    lost = psycopg.OperationalError("server closed the connection")
    assert _run([lost, lost, None]) == (3, 2)


def test_other_errors_are_raised_at_once() -> None:
    with pytest.raises(psycopg.errors.UniqueViolation):
        _run([psycopg.errors.UniqueViolation("duplicate key"), None])


def test_retries_are_bounded_when_asked() -> None:
    lost = psycopg.OperationalError("down")
    with pytest.raises(psycopg.OperationalError):
        _run([lost, lost, lost, None], max_retries=2)


def test_other_stores_name_their_own_lost_connection_errors() -> None:
    attempts: list[int] = []
    retried: list[int] = []

    def attempt() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionResetError("store went away")

    retry_connection_loss(
        attempt,
        describe="test write",
        policy=RetryPolicy(initial_delay=0.0, max_delay=0.0, max_retries=5),
        on_retry=lambda: retried.append(1),
        errors=(ConnectionResetError,),
    )
    assert len(attempts) == 3 and len(retried) == 2
    # A psycopg error is not a lost connection for such a store: it propagates at once.
    with pytest.raises(psycopg.OperationalError):
        retry_connection_loss(
            lambda: (_ for _ in ()).throw(psycopg.OperationalError("x")),
            describe="test write",
            policy=RetryPolicy(initial_delay=0.0, max_delay=0.0, max_retries=5),
            errors=(ConnectionResetError,),
        )


def test_the_policy_keeps_the_sinks_defaults() -> None:
    import inspect

    from sinks.postgres import DeadLetterWriter, PostgresSink
    from sinks.redis import RedisSink
    from sinks.search_es import ElasticsearchSearchSink
    from sinks.search_pg import PostgresSearchSink

    def default(cls: type) -> RetryPolicy:
        return inspect.signature(cls).parameters["retry"].default

    forever = RetryPolicy(initial_delay=0.2, max_delay=30.0, max_retries=None)
    for sink in (PostgresSink, DeadLetterWriter, RedisSink, PostgresSearchSink):
        assert default(sink) == forever
    assert default(ElasticsearchSearchSink) == RetryPolicy(initial_delay=0.5, max_delay=30.0)
