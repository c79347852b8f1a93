"""Cancel a queued operation, retry a failed one, and watch one run: services on the real database
and runner, and the operation page's forms and live fragment."""

import pytest
from django.db import transaction
from django.test import Client

from chom.errors import ApplicationError
from chom.models import AuditEvent, Operation, OperationLogEntry
from chom.operations import (
    OperationError,
    operation_cancel,
    operation_claim,
    operation_create,
    operation_execute,
    operation_retry,
    register,
)
from chom.services import tenant_create, user_get_or_create
from fleet.models import Vps
from fleet.services import vps_create

RUNS: list[str] = []
FAILURES: list[str] = []
FAIL_NEXT: set[str] = set()


@register(
    "test.flaky",
    max_attempts=1,
    on_failure=lambda ctx, reason: FAILURES.append(reason),
)
def _flaky(ctx):
    """Fails once for a tag in FAIL_NEXT, then succeeds; each run is recorded."""
    RUNS.append(ctx.params["tag"])
    if ctx.params["tag"] in FAIL_NEXT:
        FAIL_NEXT.discard(ctx.params["tag"])
        raise OperationError("connection refused by the VPS's agent")
    return {"tag": ctx.params["tag"]}


@pytest.fixture(autouse=True)
def _clean():
    for recorded in (RUNS, FAILURES, FAIL_NEXT):
        recorded.clear()


@pytest.fixture
def ops(db):
    return user_get_or_create(email="ops@chom.test", is_staff=True)


def _queued(tag="a", **kw) -> Operation:
    with transaction.atomic():
        return operation_create(kind="test.flaky", params={"tag": tag}, **kw)


def _failed(tag="a", **kw) -> Operation:
    FAIL_NEXT.add(tag)
    op = _queued(tag, **kw)
    assert operation_execute(operation_id=op.id) == "failed"
    op.refresh_from_db()
    return op


# --- cancel --------------------------------------------------------------------------------------


def test_it_cancels_a_queued_operation_and_no_worker_runs_it_afterwards(ops):
    op = _queued()
    operation_cancel(operation=op, actor=ops, source_ip="192.0.2.7")
    assert operation_execute(operation_id=op.id) == "skipped"  # the message still arrives
    assert operation_claim(operation_id=op.id) is None
    op.refresh_from_db()
    assert (op.status, op.error) == ("cancelled", "cancelled by ops@chom.test before it ran")
    assert op.finished_at is not None and op.log_entries.last().message == op.error
    assert RUNS == [] and FAILURES == [op.error]  # the kind put its target back as after a failure
    event = AuditEvent.objects.get(action="operation.cancelled")
    assert (event.actor, event.target, event.source_ip) == (ops, f"operation:{op.id}", "192.0.2.7")


def test_it_refuses_to_cancel_an_operation_a_worker_claimed_first(ops):
    op = _queued()
    assert operation_claim(operation_id=op.id) is not None
    with pytest.raises(ApplicationError) as refused:
        operation_cancel(operation=op, actor=ops)
    assert refused.value.status == 409 and refused.value.code == "not_cancellable"
    assert "this test.flaky is running" in refused.value.message
    assert Operation.objects.get(id=op.id).status == "running"
    assert not AuditEvent.objects.filter(action="operation.cancelled").exists() and FAILURES == []


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled"])
def test_it_refuses_to_cancel_an_operation_that_is_over(ops, outcome):
    op = _queued()
    Operation.objects.filter(id=op.id).update(status=outcome)
    with pytest.raises(ApplicationError):
        operation_cancel(operation=op, actor=ops)
    assert Operation.objects.get(id=op.id).status == outcome


def test_a_cancelled_vps_creation_leaves_the_vps_failed_with_the_reason(ops):
    vps, op = vps_create(name="web-9", provider="manual", ip_address="192.0.2.9", actor=ops)
    operation_cancel(operation=op, actor=ops)
    vps.refresh_from_db()
    assert vps.status == Vps.Status.FAILED
    assert vps.status_reason == "cancelled by ops@chom.test before it ran"


# --- retry ---------------------------------------------------------------------------------------


def test_it_retries_a_failed_operation_as_a_new_one_doing_the_same_work(
    ops, django_capture_on_commit_callbacks
):
    acme, _ = tenant_create(slug="acme", tier="pro", owner_email="alice@acme.test")
    failed = _failed("deploy-1", tenant=acme, requested_by_tenant=True)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        retry = operation_retry(operation=failed, actor=ops, source_ip="192.0.2.7")
    assert len(enqueued) == 1  # to the workers once the row is committed
    assert retry.id != failed.id
    assert (retry.kind, retry.tenant, retry.params, retry.status) == (
        "test.flaky",
        acme,
        failed.params,
        "queued",
    )
    assert (retry.target_type, retry.target_id, retry.created_by) == (
        failed.target_type,
        failed.target_id,
        ops,
    )
    assert not retry.requested_by_tenant  # staff's retry is the platform's work
    assert operation_execute(operation_id=retry.id) == "succeeded"
    assert RUNS == ["deploy-1", "deploy-1"]
    failed.refresh_from_db()
    assert (failed.status, failed.error) == ("failed", "connection refused by the VPS's agent")
    assert failed.log_entries.last().message == f"retried as operation {retry.id}"
    assert retry.log_entries.first().message == f"queued test.flaky: retry of operation {failed.id}"
    event = AuditEvent.objects.get(action="operation.retried")
    assert (event.actor, event.tenant, event.target) == (ops, acme, f"operation:{failed.id}")
    assert event.data["retry"] == str(retry.id)


def test_retrying_the_same_operation_twice_queues_the_work_once(ops):
    failed = _failed()
    first = operation_retry(operation=failed, actor=ops)
    second = operation_retry(operation=failed, actor=ops)
    assert first.id == second.id
    assert (
        Operation.objects.count() == 2 and AuditEvent.objects.filter(action="operation.retried").count() == 1
    )


def test_a_cancelled_operation_can_be_retried(ops):
    op = _queued()
    operation_cancel(operation=op, actor=ops)
    retry = operation_retry(operation=op, actor=ops)
    assert operation_execute(operation_id=retry.id) == "succeeded" and RUNS == ["a"]


@pytest.mark.parametrize("status", ["queued", "running", "succeeded"])
def test_it_refuses_to_retry_what_did_not_fail(ops, status):
    op = _queued()
    Operation.objects.filter(id=op.id).update(status=status)
    op.refresh_from_db()
    with pytest.raises(ApplicationError) as refused:
        operation_retry(operation=op, actor=ops)
    assert refused.value.code == "not_retryable" and Operation.objects.count() == 1


def test_it_refuses_to_retry_a_kind_this_chom_no_longer_has(ops):
    gone = Operation.objects.create(kind="test.removed-kind", status="failed")
    with pytest.raises(ApplicationError, match="no longer knows how to run test.removed-kind"):
        operation_retry(operation=gone, actor=ops)


# --- the operation page --------------------------------------------------------------------------


@pytest.fixture
def dashboard(ops) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(ops)
    return client


def _post(client: Client, op: Operation, action: str, **extra):
    client.get(f"/operations/{op.id}/")
    token = client.cookies["csrftoken"].value
    return client.post(f"/operations/{op.id}/{action}", {"csrfmiddlewaretoken": token}, **extra)


def _live(client: Client, op: Operation) -> str:
    response = client.get(f"/operations/{op.id}/live", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    return response.content.decode()


def test_the_operation_page_polls_its_log_every_second_until_the_operation_ends(dashboard):
    op = _queued()
    page = dashboard.get(f"/operations/{op.id}/").content.decode()
    poll = f'hx-get="/operations/{op.id}/live" hx-trigger="every 1s" hx-swap="outerHTML"'
    assert poll in page and '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page
    operation_claim(operation_id=op.id)
    OperationLogEntry.objects.create(operation=op, message="release-create: building")
    fragment = _live(dashboard, op)
    assert poll in fragment and "release-create: building" in fragment and "<html" not in fragment
    assert '<span class="status running">running</span>' in fragment
    Operation.objects.filter(id=op.id).update(status="succeeded")
    OperationLogEntry.objects.create(operation=op, message="succeeded")
    last = _live(dashboard, op)
    assert "hx-trigger" not in last and "succeeded</span>" in last  # the swap that stops the polling
    page = dashboard.get(f"/operations/{op.id}/").content.decode()
    assert "hx-trigger" not in page and "noscript" not in page and "release-create: building" in page


def test_the_live_fragment_without_htmx_is_the_whole_page(dashboard):
    op = _queued()
    response = dashboard.get(f"/operations/{op.id}/live")
    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    page = response.content.decode()
    assert page.startswith("<!doctype html>") and f'hx-get="/operations/{op.id}/live"' in page


def test_staff_cancel_a_queued_operation_from_its_page(dashboard):
    op = _queued()
    page = dashboard.get(f"/operations/{op.id}/").content.decode()
    assert f'action="/operations/{op.id}/cancel"' in page and "/retry" not in page
    response = _post(dashboard, op, "cancel")
    assert response.status_code == 302 and response["Location"] == f"/operations/{op.id}/"
    assert Operation.objects.get(id=op.id).status == "cancelled"
    shown = [str(m) for m in dashboard.get(f"/operations/{op.id}/").context["messages"]]
    assert shown == ["test.flaky cancelled: it will not run."]


def test_staff_retry_a_failed_operation_from_its_page(dashboard):
    failed = _failed()
    assert (
        f'action="/operations/{failed.id}/retry"'
        in dashboard.get(f"/operations/{failed.id}/").content.decode()
    )
    response = _post(dashboard, failed, "retry")
    retry = Operation.objects.get(idempotency_key=f"retry:{failed.id}")
    assert response.status_code == 302 and response["Location"] == f"/operations/{retry.id}/"


def test_a_refused_cancel_goes_back_to_the_page_with_the_reason(dashboard):
    op = _queued()
    Operation.objects.filter(id=op.id).update(status="succeeded")
    page = f"http://testserver/operations/{op.id}/"
    response = _post(dashboard, op, "cancel", HTTP_REFERER=page)
    assert response.status_code == 302 and response["Location"] == page
    shown = [str(m) for m in dashboard.get(page).context["messages"]]
    assert shown == ["Only a queued operation can be cancelled; this test.flaky is succeeded."]


def test_it_refuses_a_cancel_without_the_csrf_token(dashboard):
    op = _queued()
    assert dashboard.post(f"/operations/{op.id}/cancel").status_code == 403
    assert Operation.objects.get(id=op.id).status == "queued"


def test_the_operations_table_offers_cancel_and_retry_where_they_apply(dashboard):
    queued, failed = _queued("q"), _failed("f")
    page = dashboard.get("/operations/").content.decode()
    assert f"/operations/{queued.id}/cancel" in page and f"/operations/{failed.id}/retry" in page
    assert f"/operations/{queued.id}/retry" not in page and f"/operations/{failed.id}/cancel" not in page
