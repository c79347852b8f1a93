"""Acknowledging and silencing alerts from the dashboard, and the alert history. Silences go to a
real Alertmanager (Debian's package)."""

import html
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from chom.errors import ApplicationError
from chom.models import AuditEvent
from chom.services import tenant_create, user_get_or_create
from devstack.processes import free_port
from observability.clients import alertmanager as am
from observability.models import Alert
from observability.services import (
    alert_acknowledge,
    alert_raise,
    alert_resolve,
    alert_silence,
    alertmanager_ingest,
    silence_expire,
)

LABELS = {"alertname": "DiskAlmostFull", "severity": "critical", "vps": "web1"}


def _from_alertmanager(status="firing", fingerprint="a1b2c3", labels=None) -> Alert:
    """Received through the webhook; a resolved one fired first."""
    for step in ("firing", "resolved") if status == "resolved" else ("firing",):
        _ingest(step, fingerprint, labels)
    return Alert.objects.get(fingerprint=f"am:{fingerprint}", status=status)


def _ingest(status: str, fingerprint: str, labels: dict | None) -> None:
    alertmanager_ingest(
        payload={
            "alerts": [
                {
                    "status": status,
                    "labels": labels or LABELS,
                    "annotations": {"summary": "/ on web1 is 91% full"},
                    "startsAt": "2025-01-31T12:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": fingerprint,
                }
            ]
        }
    )


@pytest.fixture
def ops(db):
    return user_get_or_create(email="ops@chom.test", is_staff=True)


@pytest.fixture
def dashboard(ops) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(ops)
    return client


def _post(client: Client, path: str, data: dict | None = None, **extra):
    """A form post the way the browser sends it: with the CSRF token of the page."""
    client.get("/observability/alerts/")
    return client.post(
        path, {"csrfmiddlewaretoken": client.cookies["csrftoken"].value, **(data or {})}, **extra
    )


def _shown(client: Client, page="/observability/alerts/") -> list[str]:
    return [str(m) for m in client.get(page).context["messages"]]


# --- acknowledge ---------------------------------------------------------------------------------


def test_it_records_who_acknowledged_an_alert_and_audits_it_once(ops, db):
    alert = _from_alertmanager()
    alert_acknowledge(alert=alert, actor=ops, source_ip="192.0.2.7")
    later = user_get_or_create(email="bob@chom.test", is_staff=True)
    again = alert_acknowledge(alert=alert, actor=later)
    assert again.acknowledged_by == ops and again.acknowledged_at is not None
    [event] = AuditEvent.objects.filter(action="alert.acknowledged")
    assert (event.actor, event.target, event.source_ip) == (ops, f"alert:{alert.pk}", "192.0.2.7")


def test_it_refuses_to_acknowledge_an_alert_that_is_over(ops, db):
    alert_raise(name="vps_unreachable", key="web1", summary="web1 does not answer SSH")
    alert_resolve(name="vps_unreachable", key="web1")
    with pytest.raises(ApplicationError) as refused:
        alert_acknowledge(alert=Alert.objects.get(), actor=ops)
    assert refused.value.code == "alert_resolved"
    assert not AuditEvent.objects.filter(action="alert.acknowledged").exists()


def test_a_new_occurrence_of_an_acknowledged_alert_starts_unacknowledged(ops, db):
    first = alert_raise(name="vps_unreachable", key="web1", summary="web1 does not answer SSH")
    alert_acknowledge(alert=first, actor=ops)
    alert_resolve(name="vps_unreachable", key="web1")
    second = alert_raise(name="vps_unreachable", key="web1", summary="web1 does not answer SSH")
    assert second.pk != first.pk and second.acknowledged_at is None


def test_staff_acknowledge_from_the_alert_page_with_the_csrf_token(dashboard, ops):
    alert = _from_alertmanager()
    page = dashboard.get("/observability/alerts/").content.decode()
    assert f'action="/observability/alerts/{alert.pk}/acknowledge"' in page
    response = _post(
        dashboard, f"/observability/alerts/{alert.pk}/acknowledge", {"next": "/observability/alerts/"}
    )
    assert response.status_code == 302 and response["Location"] == "/observability/alerts/"
    alert.refresh_from_db()
    assert alert.acknowledged_by == ops
    page = dashboard.get("/observability/alerts/").content.decode()
    assert "acknowledged by ops@chom.test" in page and "/acknowledge" not in page


def test_it_refuses_an_acknowledgement_without_the_csrf_token(dashboard):
    alert = _from_alertmanager()
    assert dashboard.post(f"/observability/alerts/{alert.pk}/acknowledge").status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_it_sends_a_forged_next_back_to_the_alert_instead(dashboard):
    alert = _from_alertmanager()
    response = _post(
        dashboard, f"/observability/alerts/{alert.pk}/acknowledge", {"next": "https://evil.test/"}
    )
    assert response["Location"] == f"/observability/alerts/{alert.pk}/"


# --- silence -------------------------------------------------------------------------------------


@pytest.mark.real
def test_it_silences_an_alert_in_alertmanager_for_the_chosen_time(alertmanager, ops):
    alert = _from_alertmanager()
    alertmanager.fire(LABELS)
    silence_id = alert_silence(alert=alert, duration=timedelta(hours=2), actor=ops, source_ip="192.0.2.7")
    assert alertmanager.silenced_by(LABELS) == [silence_id]
    stored = alertmanager.silence(silence_id)
    assert {(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in stored["matchers"]} == {
        (k, v, False, True) for k, v in LABELS.items()
    }
    assert stored["createdBy"] == "ops@chom.test"
    assert stored["comment"] == "silenced from CHOM for 2 hours: / on web1 is 91% full"
    [silence] = am.silences()
    assert timedelta(minutes=119) < silence.ends_at - timezone.now() <= timedelta(hours=2)
    event = AuditEvent.objects.get(action="alert.silenced")
    assert (event.actor, event.target, event.data["silence"]) == (ops, f"alert:{alert.pk}", silence_id)
    assert event.data["for"] == "2 hours"


@pytest.mark.real
def test_a_silence_mutes_only_the_alert_it_was_made_for(alertmanager, ops):
    other = {**LABELS, "vps": "web2"}
    alertmanager.fire(LABELS)
    alertmanager.fire(other)
    silence_id = alert_silence(alert=_from_alertmanager(), duration=timedelta(minutes=5), actor=ops)
    assert alertmanager.silenced_by(LABELS) == [silence_id]
    assert alertmanager.silenced_by(other) == []


def test_it_refuses_to_silence_what_alertmanager_never_sent(ops, settings):
    settings.ALERTMANAGER_URL = f"http://127.0.0.1:{free_port()}"  # never asked: nothing listens
    own = alert_raise(name="vps_unreachable", key="web1", summary="web1 does not answer SSH")
    with pytest.raises(ApplicationError) as refused:
        alert_silence(alert=own, duration=timedelta(hours=1), actor=ops)
    assert refused.value.code == "not_silenceable" and "Acknowledge it instead" in refused.value.message


@pytest.mark.parametrize(
    ("duration", "code"),
    [
        (timedelta(seconds=30), "invalid_input"),
        (timedelta(days=31), "invalid_input"),
        (None, "alert_resolved"),
    ],
    ids=["too-short", "too-long", "resolved"],
)
def test_it_refuses_a_silence_it_cannot_make(ops, settings, duration, code):
    settings.ALERTMANAGER_URL = f"http://127.0.0.1:{free_port()}"
    alert = _from_alertmanager(status="resolved") if duration is None else _from_alertmanager()
    with pytest.raises(ApplicationError) as refused:
        alert_silence(alert=alert, duration=duration or timedelta(hours=1), actor=ops)
    assert refused.value.code == code
    assert not AuditEvent.objects.filter(action="alert.silenced").exists()


@pytest.mark.real
def test_staff_silence_from_the_alert_page_and_see_it_there(alertmanager, dashboard):
    alert = _from_alertmanager()
    form = {
        "amount": "30",
        "unit": "minutes",
        "comment": "replacing the disk",
        "next": "/observability/alerts/",
    }
    response = _post(dashboard, f"/observability/alerts/{alert.pk}/silence", form)
    assert response.status_code == 302
    [silence] = am.silences()
    assert silence.comment == "replacing the disk"
    assert _shown(dashboard) == ["DiskAlmostFull silenced for 30 minutes."]
    page = dashboard.get("/observability/alerts/").content.decode()
    assert f"silenced until {timezone.localtime(silence.ends_at):%Y-%m-%d %H:%M}" in page
    detail = dashboard.get(f"/observability/alerts/{alert.pk}/").content.decode()
    assert silence.id in detail


def test_the_alert_page_shows_why_a_silence_failed_when_alertmanager_is_down(dashboard, settings):
    settings.ALERTMANAGER_URL = f"http://127.0.0.1:{free_port()}"
    alert = _from_alertmanager()
    page = f"http://testserver/observability/alerts/{alert.pk}/"
    response = _post(
        dashboard,
        f"/observability/alerts/{alert.pk}/silence",
        {"amount": "1", "unit": "hours"},
        HTTP_REFERER=page,
    )
    assert response.status_code == 302 and response["Location"] == page
    assert _shown(dashboard, page) == ["Alertmanager is unreachable: ConnectionError"]
    assert (
        "Silences unknown: Alertmanager is unreachable"
        in dashboard.get("/observability/alerts/").content.decode()
    )
    assert not AuditEvent.objects.filter(action="alert.silenced").exists()


def test_it_refuses_a_silence_form_without_a_duration(dashboard, settings):
    settings.ALERTMANAGER_URL = ""
    alert = _from_alertmanager()
    _post(dashboard, f"/observability/alerts/{alert.pk}/silence", {"amount": "0", "unit": "weeks"})
    assert _shown(dashboard) == ["Give the silence a duration."]


# --- silences page -------------------------------------------------------------------------------


@pytest.mark.real
def test_staff_expire_a_silence_from_the_silences_page(alertmanager, dashboard, ops):
    alertmanager.fire(LABELS)
    silence_id = alert_silence(alert=_from_alertmanager(), duration=timedelta(hours=1), actor=ops)
    page = html.unescape(dashboard.get("/observability/silences/").content.decode())
    assert 'alertname="DiskAlmostFull"' in page and f"/observability/silences/{silence_id}/expire" in page
    response = _post(dashboard, f"/observability/silences/{silence_id}/expire")
    assert response.status_code == 302 and response["Location"] == "/observability/silences/"
    assert alertmanager.silenced_by(LABELS) == []
    assert "Nothing is silenced." in dashboard.get("/observability/silences/").content.decode()
    assert silence_id in dashboard.get("/observability/silences/?state=expired").content.decode()
    event = AuditEvent.objects.get(action="silence.expired")
    assert event.target == f"silence:{silence_id}" and event.actor == ops
    assert event.data["matchers"].startswith('alertname="DiskAlmostFull"')


@pytest.mark.real
def test_expiring_an_expired_silence_changes_nothing_and_an_unknown_one_is_not_found(alertmanager, ops):
    silence_id = alert_silence(alert=_from_alertmanager(), duration=timedelta(hours=1), actor=ops)
    silence_expire(silence_id=silence_id, actor=ops)
    silence_expire(silence_id=silence_id, actor=ops)
    assert AuditEvent.objects.filter(action="silence.expired").count() == 1
    with pytest.raises(ApplicationError) as unknown:
        silence_expire(silence_id="6f1b3a3e-0000-4000-8000-000000000000", actor=ops)
    assert unknown.value.status == 404


def test_the_silences_page_says_when_alertmanager_is_not_configured(dashboard, settings):
    settings.ALERTMANAGER_URL = ""
    page = dashboard.get("/observability/silences/").content.decode()
    assert "Cannot list silences: ALERTMANAGER_URL is not configured on this installation" in page


# --- history -------------------------------------------------------------------------------------


def _resolved(
    name: str, *, tenant=None, severity="warning", started_days_ago: int, lasted_hours: int
) -> Alert:
    started = timezone.now() - timedelta(days=started_days_ago)
    return Alert.objects.create(
        fingerprint=f"{name}:{started_days_ago}",
        name=name,
        summary=f"{name} summary",
        severity=severity,
        status=Alert.Status.RESOLVED,
        tenant=tenant,
        started_at=started,
        resolved_at=started + timedelta(hours=lasted_hours),
    )


def _names(client: Client, query: str = "") -> list[str]:
    page = client.get(f"/observability/alerts/history/{query}")
    assert page.status_code == 200
    return [alert.name for alert, _ in page.context["rows"]]


def test_the_history_lists_resolved_alerts_latest_first_with_filters(dashboard):
    acme, _ = tenant_create(slug="acme", tier="pro", owner_email="alice@acme.test")
    _resolved("ssl_failed", tenant=acme, started_days_ago=10, lasted_hours=2)
    _resolved("DiskAlmostFull", severity="critical", started_days_ago=3, lasted_hours=5)
    _resolved("vps_unreachable", started_days_ago=1, lasted_hours=1)
    _from_alertmanager()  # firing: never in the history
    assert _names(dashboard) == ["vps_unreachable", "DiskAlmostFull", "ssl_failed"]
    assert _names(dashboard, "?tenant=acme") == ["ssl_failed"]
    assert _names(dashboard, "?severity=critical") == ["DiskAlmostFull"]
    assert _names(dashboard, "?name=disk") == ["DiskAlmostFull"]
    since = (timezone.now() - timedelta(days=4)).date()
    until = (timezone.now() - timedelta(days=2)).date()
    assert _names(dashboard, f"?since={since}&until={until}") == ["DiskAlmostFull"]
    assert "5\xa0hours" in dashboard.get("/observability/alerts/history/?severity=critical").content.decode()


def test_the_history_ignores_a_filter_it_cannot_read_and_says_so(dashboard):
    _resolved("vps_unreachable", started_days_ago=1, lasted_hours=1)
    page = dashboard.get("/observability/alerts/history/?since=yesterday")
    assert page.status_code == 200 and [a.name for a, _ in page.context["rows"]] == ["vps_unreachable"]
    assert "Enter a valid date." in page.content.decode()


def test_the_history_keeps_its_filters_across_pages(dashboard):
    for day in range(1, 53):
        _resolved("vps_unreachable", started_days_ago=day, lasted_hours=1)
    page = dashboard.get("/observability/alerts/history/?name=vps").content.decode()
    assert "page 1 of 2" in page and 'href="?name=vps&page=2"' in page
