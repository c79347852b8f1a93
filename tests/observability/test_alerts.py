"""Alertmanager's webhook: stored once per fingerprint, resolution recorded, notifications routed
to staff and to the tenant's owners, delivered by email and Slack-style webhooks."""

import copy

import pytest
from django.core import mail

from observability.models import Alert, Notification
from observability.services import alert_raise, notifications_deliver
from tests.observability.factories import make_site, make_vps

TOKEN = "am-webhook-token"


@pytest.fixture
def webhook(client, settings):
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    settings.ALERT_EMAILS = ["ops@chom.test"]

    def post(payload, token=TOKEN):
        return client.post(
            "/webhooks/alertmanager",
            payload,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )

    return post


def _payload(status="firing", labels=None, fingerprint="a1b2c3", **extra):
    alert = {
        "status": status,
        "labels": {"alertname": "DiskAlmostFull", "severity": "critical", "vps": "web1", **(labels or {})},
        "annotations": {"summary": "/ on web1 is 91% full"},
        "startsAt": "2025-01-31T12:00:00Z",
        "endsAt": "2025-01-31T12:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
        **extra,
    }
    return {"version": "4", "status": status, "receiver": "chom", "groupKey": "{}:{}", "alerts": [alert]}


def test_it_stores_a_firing_alert_once_however_often_alertmanager_repeats_it(webhook, db):
    assert webhook(_payload()).json() == {"created": 1, "refreshed": 0, "resolved": 0}
    assert webhook(_payload()).json() == {"created": 0, "refreshed": 1, "resolved": 0}
    alert = Alert.objects.get()
    assert (alert.name, alert.severity, alert.status, alert.source) == (
        "DiskAlmostFull",
        "critical",
        "firing",
        "alertmanager",
    )
    assert alert.summary == "/ on web1 is 91% full" and alert.labels["vps"] == "web1"
    assert alert.started_at.isoformat() == "2025-01-31T12:00:00+00:00"
    assert Notification.objects.filter(event="firing").count() == 1


def test_it_records_resolution_once_and_notifies_it(webhook, db):
    webhook(_payload())
    assert webhook(_payload("resolved")).json()["resolved"] == 1
    assert webhook(_payload("resolved")).json()["resolved"] == 0
    alert = Alert.objects.get()
    assert alert.status == "resolved" and alert.resolved_at.isoformat() == "2025-01-31T12:10:00+00:00"
    assert sorted(Notification.objects.values_list("event", flat=True)) == ["firing", "resolved"]


def test_it_opens_a_new_alert_when_a_resolved_problem_fires_again(webhook, db):
    webhook(_payload())
    webhook(_payload("resolved"))
    webhook(_payload())
    assert sorted(Alert.objects.values_list("status", flat=True)) == ["firing", "resolved"]


def test_it_routes_site_and_tenant_alerts_to_the_tenants_owners(webhook, alice, bob, charlie):
    site = make_site(alice.tenant, make_vps("web1"), "shop.acme.test")
    webhook(
        _payload(labels={"alertname": "CertificateExpiringSoon", "site": site.unix_user}, fingerprint="c1")
    )
    webhook(_payload(labels={"alertname": "VpsDown", "tenant": "globex"}, fingerprint="c2"))
    cert = Alert.objects.get(name="CertificateExpiringSoon")
    assert (cert.tenant, cert.site) == (alice.tenant, site)
    recipients = set(cert.notifications.values_list("recipient", flat=True))
    assert recipients == {"ops@chom.test", "alice@acme.test"}  # bob is a member, not an owner
    down = Alert.objects.get(name="VpsDown")
    assert down.tenant == charlie.tenant
    assert set(down.notifications.values_list("recipient", flat=True)) == {
        "ops@chom.test",
        "charlie@globex.test",
    }


@pytest.mark.parametrize("token", ["", "wrong"])
def test_it_refuses_the_webhook_without_the_token(webhook, db, token):
    assert webhook(_payload(), token=token).status_code == 401
    assert not Alert.objects.exists()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.pop("alerts"),
        lambda p: p["alerts"][0].update(status="pending"),
        lambda p: p["alerts"][0].pop("fingerprint"),
        lambda p: p["alerts"][0].update(labels="x"),
    ],
)
def test_it_rejects_a_malformed_payload(webhook, db, mutate):
    payload = copy.deepcopy(_payload())
    mutate(payload)
    response = webhook(payload)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_input"
    assert not Alert.objects.exists()


def test_it_delivers_email_and_chat_notifications_once(webhook, chat, db):
    webhook(_payload())
    assert notifications_deliver() == {"sent": 2, "failed": 0, "retry": 0}
    assert notifications_deliver() == {"sent": 0, "failed": 0, "retry": 0}
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "[CHOM] FIRING: DiskAlmostFull (vps=web1)"
    assert mail.outbox[0].to == ["ops@chom.test"]
    [post] = chat.requests
    assert post.path == "/hooks/T000/B000/secret" and "FIRING: DiskAlmostFull" in post.body["text"]
    stored = Notification.objects.get(channel="webhook")
    assert stored.status == "sent" and "secret" not in stored.recipient  # only the URL's hash


def test_it_retries_a_failed_chat_webhook_and_gives_up_after_five_attempts(webhook, chat, db):
    chat.fail(500)
    webhook(_payload())
    for _ in range(4):
        assert notifications_deliver()["retry"] == 1
    assert notifications_deliver()["failed"] == 1
    failed = Notification.objects.get(channel="webhook")
    assert failed.status == "failed" and failed.attempts == 5 and "answered 500" in failed.error
    assert len(chat.requests) == 5 and len(mail.outbox) == 1


def test_it_notifies_alerts_chom_raises_itself(settings, db):
    settings.ALERT_EMAILS = ["ops@chom.test"]
    alert_raise(name="vps_unreachable", key="web1", summary="web1 missed 2 checks", severity="critical")
    alert_raise(name="vps_unreachable", key="web1", summary="web1 missed 3 checks", severity="critical")
    notifications_deliver()
    assert [m.subject for m in mail.outbox] == ["[CHOM] FIRING: vps_unreachable"]


def test_it_lists_a_tenants_own_alerts_and_all_alerts_for_staff(webhook, alice, charlie, staff):
    webhook(_payload(labels={"tenant": "acme"}, fingerprint="x1"))
    webhook(_payload(labels={"tenant": "globex"}, fingerprint="x2"))
    webhook(_payload(fingerprint="x3"))
    mine = alice.client().get("/api/v1/alerts").json()["results"]
    assert [a["tenant"] for a in mine] == ["acme"]
    assert len(staff.client().get("/api/v1/alerts").json()["results"]) == 3
    webhook(_payload("resolved", fingerprint="x1"))
    assert alice.client().get("/api/v1/alerts", {"status": "firing"}).json()["results"] == []
    assert alice.client().get("/api/v1/alerts", {"status": "bogus"}).status_code == 400


def test_it_shows_alerts_on_the_staff_dashboard(webhook, client, django_user_model):
    webhook(_payload())
    admin = django_user_model.objects.create_user("ops", "ops@chom.test", "pw", is_staff=True)
    client.force_login(admin)
    page = client.get("/observability/alerts/").content.decode()
    assert "DiskAlmostFull" in page and "/ on web1 is 91% full" in page and "email firing: pending" in page
