"""Alerts about a tenant's sites reach that tenant's notification channels, once per transition,
and `/api/v1/alerts` shows each tenant its own alerts only, without the fleet's insides. The
alerts arrive as Alertmanager posts them (its documented webhook JSON, version 4) to CHOM's real
webhook view; the channels are a local Slack-style receiver (acme) and an email (globex)."""

import json

import pytest
from django.core import mail

from chom.events import event_emit
from observability.models import Alert, ChannelDelivery
from observability.notifications import channel_create, channel_deliveries_send
from observability.services import alert_raise, alert_resolve
from tests.observability.factories import make_site, make_vps
from tests.observability.fakes import FakeChatWebhook

TOKEN = "am-webhook-token"
SITE_EVENTS = ["site.down", "site.up", "certificate.expiring", "backup.failed", "alert.resolved"]


@pytest.fixture
def chat(settings):
    settings.REPOSITORY_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    fake = FakeChatWebhook()
    yield fake
    fake.close()


@pytest.fixture
def world(alice, charlie, chat, settings):
    """acme's shop and blog and globex's store, all on the shared VPS web1; acme listens on a
    Slack-style channel, globex by email."""
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    settings.ALERT_EMAILS, settings.ALERT_WEBHOOK_URLS = [], []
    web1 = make_vps("web1", ip_address="192.0.2.10")
    sites = {
        "shop": make_site(alice.tenant, web1, "shop.acme.test"),
        "blog": make_site(alice.tenant, web1, "blog.acme.test"),
        "store": make_site(charlie.tenant, web1, "store.globex.test"),
    }
    channel_create(tenant=alice.tenant, kind="slack", url=f"{chat.url}/services/T0/B0/x", events=SITE_EVENTS)
    channel_create(tenant=charlie.tenant, kind="email", address="ops@globex.test", events=SITE_EVENTS)
    return sites


def _alert(status: str, fingerprint: str, labels: dict, summary: str) -> dict:
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": summary},
        "startsAt": "2025-01-31T12:00:00Z",
        "endsAt": "2025-01-31T12:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=probe_success",
        "fingerprint": fingerprint,
    }


def _post(client, *alerts: dict):
    """One webhook call as Alertmanager makes it (one group)."""
    payload = {
        "version": "4",
        "groupKey": '{}:{alertname="SiteDown"}',
        "truncatedAlerts": 0,
        "status": alerts[0]["status"],
        "receiver": "chom",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }
    response = client.post(
        "/webhooks/alertmanager",
        payload,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
    )
    assert response.status_code == 200, response.content
    return response.json()


def site_down(site, status="firing", scheme="http"):
    labels = {
        "alertname": "SiteDown", "severity": "critical", "site": site.unix_user, "domain": site.domain,
        "tenant": site.tenant.slug, "vps": site.vps.name, "scheme": scheme, "job": "chom-probes",
        "instance": f"{scheme}://192.0.2.10/",
    }  # fmt: skip
    return _alert(status, f"sd-{site.pk}-{scheme}", labels, f"{site.domain} does not answer ({scheme})")


def vps_down(status="firing", vps="web1"):
    labels = {"alertname": "VpsDown", "severity": "critical", "vps": vps, "kind": "node",
              "vps_kind": "shared", "job": "chom-fleet", "instance": "192.0.2.10:9100"}  # fmt: skip
    return _alert(
        status,
        f"vd-{vps}",
        labels,
        f"VPS {vps} does not answer scrapes of its node exporter (192.0.2.10:9100)",
    )


def site_alert(name, site, status="firing", summary=""):
    labels = {"alertname": name, "severity": "warning", "site": site.unix_user, "domain": site.domain,
              "tenant": site.tenant.slug, "job": "chom", "instance": "10.0.0.2:8000"}  # fmt: skip
    return _alert(status, f"{name}-{site.pk}", labels, summary or f"{name} for {site.domain}")


@pytest.fixture
def told(chat):
    """What the channels received since the last call: acme's chat texts, then globex's subjects."""
    seen = 0

    def read() -> list[str]:
        nonlocal seen
        channel_deliveries_send()
        texts = [r.body["text"] for r in chat.requests[seen:]]
        seen = len(chat.requests)
        subjects = [m.subject for m in mail.outbox]
        mail.outbox.clear()
        return texts + subjects

    return read


def test_it_tells_the_tenant_once_when_its_site_goes_down_and_once_when_it_answers_again(client, world, told):
    shop = world["shop"]
    assert _post(client, site_down(shop))["created"] == 1
    for _ in range(3):  # Alertmanager re-sends a firing group every group_interval
        assert _post(client, site_down(shop))["refreshed"] == 1
    assert told() == [
        "[CHOM] site.down shop.acme.test: shop.acme.test is down: it does not answer CHOM's uptime probe."
    ]

    assert _post(client, site_down(shop, "resolved"))["resolved"] == 1
    assert _post(client, site_down(shop, "resolved"))["resolved"] == 0
    assert told() == ["[CHOM] site.up shop.acme.test: shop.acme.test answers again."]


def test_it_says_one_site_down_and_one_site_up_per_outage_when_server_and_probe_alerts_overlap(
    client, world, told
):
    shop, store = world["shop"], world["store"]
    _post(client, vps_down())
    assert sorted(told()) == sorted(
        [
            "[CHOM] site.down blog.acme.test: blog.acme.test is down: its server does not answer.",
            "[CHOM] site.down shop.acme.test: shop.acme.test is down: its server does not answer.",
            "[CHOM] site.down store.globex.test: store.globex.test is down: its server does not answer.",
        ]
    )
    # Two minutes later the probes agree (http and https of the shop, http of the store): no news.
    _post(client, site_down(shop), site_down(shop, scheme="https"), site_down(store))
    alert_raise(name="vps_unreachable", key="web1", summary="web1 missed 3 checks", labels={"vps": "web1"})
    assert told() == []

    # The server answers again, but the shop's probes still fail: only blog and store are up.
    _post(client, vps_down("resolved"))
    alert_resolve(name="vps_unreachable", key="web1")
    assert told() == ["[CHOM] site.up blog.acme.test: blog.acme.test answers again."]
    _post(client, site_down(store, "resolved"), site_down(shop, "resolved"))
    assert sorted(told()) == [
        "[CHOM] site.up store.globex.test: store.globex.test answers again."
    ]  # the shop's https probe still fails
    _post(client, site_down(shop, "resolved", scheme="https"))
    assert told() == ["[CHOM] site.up shop.acme.test: shop.acme.test answers again."]

    # A new outage is news again.
    _post(client, site_down(shop))
    assert len(told()) == 1


def test_it_keeps_the_shared_servers_address_and_errors_out_of_site_down_messages(world):
    alert_raise(
        name="vps_unreachable",
        key="web1",
        summary="VPS web1 (192.0.2.10) missed 3 health checks: Permission denied (publickey)",
        labels={"vps": "web1"},
    )
    messages = [d.message for d in ChannelDelivery.objects.all()]
    assert len(messages) == 3
    assert not any("192.0.2.10" in m or "web1" in m or "publickey" in m for m in messages)


def test_it_sends_certificate_and_backup_alerts_and_their_resolution(client, world, told):
    shop = world["shop"]
    cert = site_alert(
        "CertificateExpiringSoon", shop, summary="The certificate of shop.acme.test expires in 13d"
    )
    backup = site_alert("BackupFailed", shop, summary="The last backup of shop.acme.test failed")
    _post(client, cert, backup)
    _post(client, cert, backup)
    assert sorted(told()) == [  # one event's deliveries go out at once, in any order
        "[CHOM] backup.failed shop.acme.test: The last backup of shop.acme.test failed",
        "[CHOM] certificate.expiring shop.acme.test: The certificate of shop.acme.test expires in 13d",
    ]
    resolved = site_alert(
        "BackupFailed", shop, "resolved", summary="The last backup of shop.acme.test failed"
    )
    _post(client, resolved)
    _post(client, resolved)
    assert told() == [
        "[CHOM] alert.resolved shop.acme.test: Resolved: The last backup of shop.acme.test failed"
    ]


def test_it_does_not_restate_what_chom_told_the_tenant_itself_that_day(client, world, told):
    shop = world["shop"]
    message = "The nightly backup of shop.acme.test failed: S3 answered 403"
    event_emit(event="backup.failed", tenant=shop.tenant, site=shop, message=message)  # as backups does
    _post(client, site_alert("BackupFailed", shop))
    assert told() == [f"[CHOM] backup.failed shop.acme.test: {message}"]
    _post(client, site_alert("BackupFailed", world["blog"]))  # another site: news
    assert told() == ["[CHOM] backup.failed blog.acme.test: BackupFailed for blog.acme.test"]


@pytest.mark.parametrize(
    "labels",
    [
        {"alertname": "ExporterDown", "vps": "web1", "kind": "nginx"},
        {"alertname": "MariaDBDown", "vps": "web1", "kind": "mysqld"},
        {"alertname": "DiskAlmostFull", "vps": "web1", "mountpoint": "/"},
        {"alertname": "ChomDown", "job": "chom"},
        {"alertname": "VpsDown", "vps": "web9"},  # a server no site serves from
        {"alertname": "BackupUnverified", "tenant": "acme"},  # names no site: not a site event
    ],
)
def test_it_never_sends_fleet_alerts_to_tenants(client, world, told, alice, labels):
    _post(
        client,
        _alert("firing", "fleet-1", {"severity": "critical", "instance": "192.0.2.10:9100", **labels}, "x"),
    )
    _post(client, _alert("resolved", "fleet-1", {"severity": "critical", **labels}, "x"))
    assert told() == [] and not ChannelDelivery.objects.exists()
    if "tenant" not in labels:
        assert alice.client().get("/api/v1/alerts").json()["results"] == []


def test_it_sends_a_site_alert_to_the_sites_tenant_whatever_its_tenant_label_says(
    client, world, told, alice, charlie
):
    store = world["store"]  # globex's
    forged = site_down(store)
    forged["labels"]["tenant"] = "acme"
    _post(client, forged)
    down = "store.globex.test is down: it does not answer CHOM's uptime probe."
    assert told() == [f"[CHOM] site.down store.globex.test: {down}"]
    assert mail.outbox == [] and not ChannelDelivery.objects.filter(channel__tenant=alice.tenant).exists()
    alert = Alert.objects.get()
    assert (alert.tenant, alert.site) == (charlie.tenant, store)
    assert alice.client().get("/api/v1/alerts").json()["results"] == []
    assert alice.client().get(f"/api/v1/alerts/{alert.pk}").status_code == 404
    assert [a["id"] for a in charlie.client().get("/api/v1/alerts").json()["results"]] == [alert.pk]


def test_it_does_not_tell_about_a_suspended_site_or_a_deleted_sites_backups(client, world, told):
    from sites.models import Site

    shop, blog = world["shop"], world["blog"]
    Site.objects.filter(pk=shop.pk).update(status="suspended", suspended_reason="billing")
    Site.objects.filter(pk=blog.pk).update(status="deleted")
    _post(client, site_down(shop), site_alert("BackupFailed", blog))
    _post(client, site_down(shop, "resolved"), site_alert("BackupFailed", blog, "resolved"))
    assert told() == []


def test_it_lists_a_tenants_own_alerts_without_the_fleets_insides(client, world, alice, staff):
    _post(client, site_down(world["shop"]), site_down(world["store"]), vps_down())
    mine = alice.client().get("/api/v1/alerts").json()["results"]
    assert [(a["name"], a["site"]) for a in mine] == [("SiteDown", world["shop"].pk)]
    assert mine[0]["labels"] == {
        "alertname": "SiteDown",
        "severity": "critical",
        "site": world["shop"].unix_user,
        "domain": "shop.acme.test",
        "tenant": "acme",
    }
    assert mine[0]["annotations"] == {"summary": "shop.acme.test does not answer (http)"}
    detail = alice.client().get(f"/api/v1/alerts/{mine[0]['id']}")
    assert detail.status_code == 200 and detail.json() == mine[0]
    assert "192.0.2.10" not in json.dumps(detail.json()) and "web1" not in json.dumps(detail.json())

    theirs = Alert.objects.get(site=world["store"])
    fleet = Alert.objects.get(name="VpsDown")
    for other in (theirs, fleet):
        assert alice.client().get(f"/api/v1/alerts/{other.pk}").status_code == 404
    assert alice.client().get("/api/v1/alerts/999999").status_code == 404

    everything = staff.client().get("/api/v1/alerts").json()["results"]
    assert len(everything) == 3
    seen = staff.client().get(f"/api/v1/alerts/{fleet.pk}").json()
    assert seen["labels"]["instance"] == "192.0.2.10:9100" and seen["labels"]["vps"] == "web1"
