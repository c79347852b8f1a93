"""The Operation lifecycle, run through the real runner on the real database."""

import threading
from contextlib import suppress
from datetime import timedelta

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from chom import operations
from chom.models import Operation
from chom.operations import OperationError, operation_create, operation_execute, register

CALLS: list[str] = []


@register("test.steps", max_attempts=2)
def _steps(ctx):
    ctx.step("first", progress=40)
    ctx.log("doing the first thing")
    ctx.step("second", progress=80)
    CALLS.append(ctx.params.get("tag", ""))
    return {"done": True}


@register("test.transient", max_attempts=2)
def _transient(ctx):
    raise OperationError("connection reset by peer", transient=True)


@register("test.fails", max_attempts=3)
def _fails(ctx):
    ctx.step("nginx -t")
    raise OperationError("nginx -t failed: unknown directive 'foo' in site.conf:12")


@register("test.crashes", max_attempts=1)
def _crashes(ctx):
    ctx.step("parsing")
    raise KeyError("boom")


HOOKS: list[tuple[str, str]] = []


@register(
    "test.hooked",
    max_attempts=1,
    on_success=lambda ctx: HOOKS.append(("success", ctx.params["outcome"])),
    on_failure=lambda ctx, reason: HOOKS.append(("failure", reason)),
)
def _hooked(ctx):
    if ctx.params["outcome"] == "fail":
        raise OperationError("it failed")
    return {}


def _create(kind, **kw):
    with transaction.atomic():
        return operation_create(kind=kind, **kw)


def test_it_enqueues_only_after_the_transaction_commits(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        op = operation_create(kind="test.steps")
    assert len(callbacks) == 1
    assert Operation.objects.get(id=op.id).status == "queued"


def test_it_runs_an_operation_to_success_with_a_step_log(db):
    op = _create("test.steps", params={"tag": "a"})
    assert operation_execute(operation_id=op.id) == "succeeded"
    op.refresh_from_db()
    assert (op.status, op.progress, op.result, op.attempts) == ("succeeded", 100, {"done": True}, 1)
    messages = [e.message for e in op.log_entries.all()]
    assert messages[:2] == ["queued test.steps", "attempt 1 of 2 started"]
    assert "step: first" in messages and "doing the first thing" in messages and messages[-1] == "succeeded"
    assert op.started_at <= op.finished_at


def test_it_is_idempotent_when_a_message_is_delivered_twice(db):
    CALLS.clear()
    op = _create("test.steps", params={"tag": "once"})
    assert operation_execute(operation_id=op.id) == "succeeded"
    assert operation_execute(operation_id=op.id) == "skipped"
    assert CALLS == ["once"]


def test_it_returns_the_same_operation_for_a_repeated_idempotency_key(db):
    first = _create("test.steps", idempotency_key="req-1")
    second = _create("test.steps", idempotency_key="req-1")
    assert first.id == second.id
    assert Operation.objects.count() == 1


def test_it_records_an_actionable_error(db):
    op = _create("test.fails")
    assert operation_execute(operation_id=op.id) == "failed"
    op.refresh_from_db()
    assert op.error == "nginx -t failed: unknown directive 'foo' in site.conf:12"
    assert op.step == "nginx -t"
    assert op.log_entries.last().level == "error"


def test_it_fails_a_crash_with_the_step_it_happened_in(db):
    op = _create("test.crashes")
    operation_execute(operation_id=op.id)
    op.refresh_from_db()
    assert op.status == "failed"
    assert "during step 'parsing'" in op.error and "KeyError" in op.error


def test_it_retries_transient_errors_with_backoff_then_fails(db):
    op = _create("test.transient")
    assert operation_execute(operation_id=op.id) == "retry:5"
    op.refresh_from_db()
    assert op.status == "queued" and op.attempts == 1
    assert "retrying in 5s" in op.log_entries.last().message
    assert operation_execute(operation_id=op.id) == "failed"
    op.refresh_from_db()
    assert op.status == "failed" and op.attempts == 2
    assert op.error == "connection reset by peer"


def test_it_fails_unknown_kinds_instead_of_leaving_them_queued(db):
    op = Operation.objects.create(kind="nope.gone")
    assert operation_execute(operation_id=op.id) == "failed"


def test_it_allows_one_running_mutation_per_target(db, alice):
    target = alice.tenant
    first = _create("test.steps", target=target)
    second = _create("test.steps", target=target)
    assert operations.operation_claim(operation_id=first.id) is not None
    assert operations.operation_claim(operation_id=second.id) is None
    assert operation_execute(operation_id=second.id) == "busy"
    second.refresh_from_db()
    assert second.status == "queued"


def test_it_enforces_one_running_mutation_in_the_database(db, alice):
    Operation.objects.create(kind="k", target_type="t", target_id="1", status="running")
    with pytest.raises(IntegrityError), transaction.atomic():
        Operation.objects.create(kind="k", target_type="t", target_id="1", status="running")
    Operation.objects.create(kind="k", target_type="t", target_id="1", status="running", mutating=False)


@pytest.mark.django_db(transaction=True)
def test_it_lets_exactly_one_of_two_racing_workers_claim():
    for _ in range(5):
        op = _create("test.steps")
        barrier = threading.Barrier(2)
        winners = []

        def claim(op_id=op.id, barrier=barrier, winners=winners):
            try:
                barrier.wait(timeout=5)
                if operations.operation_claim(operation_id=op_id) is not None:
                    winners.append(threading.get_ident())
            finally:
                connection.close()

        threads = [threading.Thread(target=claim) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert len(winners) == 1
        op.refresh_from_db()
        assert op.status == "running" and op.attempts == 1


def test_it_reclaims_a_running_operation_whose_worker_died(db, django_capture_on_commit_callbacks):
    op = _create("test.steps")
    operations.operation_claim(operation_id=op.id)
    assert operations.operations_reclaim_stale() == []  # still within its time limit
    Operation.objects.filter(id=op.id).update(deadline_at=timezone.now() - timedelta(minutes=5))
    assert operations.operations_reclaim_stale() == [str(op.id)]
    op.refresh_from_db()
    assert op.status == "queued"
    assert "reclaimed: worker lost" in op.log_entries.last().message
    assert operation_execute(operation_id=op.id) == "succeeded"


def test_it_fails_a_stale_operation_that_has_used_its_attempts(db):
    op = _create("test.steps")
    Operation.objects.filter(id=op.id).update(
        status="running",
        attempts=2,
        started_at=timezone.now() - timedelta(hours=1),
        deadline_at=timezone.now() - timedelta(minutes=30),
    )
    operations.operations_reclaim_stale()
    op.refresh_from_db()
    assert op.status == "failed"
    assert op.error.startswith("worker lost")


def test_it_enqueues_again_an_operation_whose_message_was_lost(db, settings):
    op = _create("test.steps")
    Operation.objects.filter(id=op.id).update(created_at=timezone.now() - timedelta(hours=1))
    assert operations.operations_reclaim_stale() == [str(op.id)]
    assert op.log_entries.last().message == "still queued: enqueued again"


def test_it_calls_the_success_hook_only_after_the_row_says_succeeded(db):
    HOOKS.clear()
    ok, bad = (
        _create("test.hooked", params={"outcome": "ok"}),
        _create("test.hooked", params={"outcome": "fail"}),
    )
    assert operation_execute(operation_id=ok.id) == "succeeded"
    assert operation_execute(operation_id=bad.id) == "failed"
    assert HOOKS == [("success", "ok"), ("failure", "it failed")]


@register("test.database_lost", max_attempts=2)
def _database_lost(ctx):
    ctx.step("talking to the VPS")
    with connection.cursor() as cursor:  # CHOM's database goes away under the attempt (a restart)
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


@register("test.database_lost_then_transient", max_attempts=2)
def _database_lost_then_transient(ctx):
    with suppress(OperationalError), connection.cursor() as cursor:  # the database restarts while
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")  # the attempt waits on SSH...
    raise OperationError("connection refused", transient=True)  # ...caught before its next query


@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates its own PostgreSQL session")
def test_it_requeues_a_transient_failure_whose_database_connection_died(transactional_db):
    op = _create("test.database_lost_then_transient")
    assert operation_execute(operation_id=op.id).startswith("retry:")
    op.refresh_from_db()
    assert (op.status, op.attempts) == ("queued", 1)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates its own PostgreSQL session")
def test_it_retries_an_attempt_whose_database_connection_died(transactional_db):
    op = _create("test.database_lost")
    assert operation_execute(operation_id=op.id).startswith("retry:")
    op.refresh_from_db()
    assert (op.status, op.attempts) == ("queued", 1)  # not left `running` until its deadline
    assert "database connection was lost during step 'talking to the VPS'" in op.log_entries.last().message
    assert operation_execute(operation_id=op.id) == "failed"  # the last attempt ends it, with the reason
    op.refresh_from_db()
    assert op.status == "failed" and "database connection was lost" in op.error
