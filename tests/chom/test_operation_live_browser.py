"""The operation page in Debian's Chromium: while the operation runs, new log lines and its status
appear without a reload (htmx polls every second); once it is over, the polling stops."""

import time

import pytest
from django.conf import settings
from django.test import Client

from chom.models import Operation, OperationLogEntry
from chom.operations import operation_claim
from chom.services import user_get_or_create
from tests.browser.helpers import chromium_session

pytestmark = pytest.mark.real


@pytest.fixture
def chromium():
    with chromium_session() as browser:
        yield browser


@pytest.fixture
def staff_tab(chromium, live_server, transactional_db):
    client = Client()
    client.force_login(user_get_or_create(email="ops@chom.test", is_staff=True))
    context = chromium.new_context(base_url=live_server.url)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}])
    tab = context.new_page()
    tab.set_default_timeout(5_000)
    yield tab
    context.close()


def test_it_shows_the_log_live_while_running_and_stops_polling_when_done(staff_tab):
    op = Operation.objects.create(kind="vps.create", target_type="fleet.vps", target_id="1")
    operation_claim(operation_id=op.id)
    OperationLogEntry.objects.create(operation=op, message="attempt 1 of 3 started")
    polls: list[float] = []
    staff_tab.on("request", lambda r: polls.append(time.monotonic()) if r.url.endswith("/live") else None)
    staff_tab.goto(f"/operations/{op.id}/")
    assert staff_tab.locator(".status").first.inner_text() == "running"

    OperationLogEntry.objects.create(operation=op, message="step: create the server at the provider")
    shown = time.monotonic()
    staff_tab.get_by_text("step: create the server at the provider").wait_for(timeout=2_500)
    assert time.monotonic() - shown < 2.5  # at most one poll interval plus the request

    Operation.objects.filter(id=op.id).update(status=Operation.Status.SUCCEEDED, progress=100)
    OperationLogEntry.objects.create(operation=op, message="succeeded")
    staff_tab.locator(".status.succeeded").wait_for(timeout=2_500)
    polled = len(polls)
    staff_tab.wait_for_timeout(2_500)
    assert len(polls) == polled, "htmx kept polling an operation that is over"
    assert len(polls) >= 2 and staff_tab.get_by_text("attempt 1 of 3 started").is_visible()


def test_staff_cancel_a_queued_operation_with_the_button(staff_tab):
    op = Operation.objects.create(kind="vps.create", target_type="fleet.vps", target_id="1")
    staff_tab.goto(f"/operations/{op.id}/")
    staff_tab.get_by_role("button", name="Cancel").click()
    staff_tab.locator(".status.cancelled").wait_for()
    assert Operation.objects.get(id=op.id).status == "cancelled"
    assert staff_tab.get_by_role("button", name="Retry").is_visible()
