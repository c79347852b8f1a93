"""Automatic TLS on the real database, with DNS answered by a real DNS server (pebble-challtestsrv,
told where each name points as a customer's DNS would be): a site starts waiting when it first
serves, waits with backoff while its names point elsewhere, fails after 48 h, queues exactly one
certificate once every name points at its VPS, and tells the tenant's channels."""

import threading
from datetime import timedelta

import pytest
import requests
from django.core import mail
from django.db import connection
from django.utils import timezone

from chom.models import Operation
from chom.operations import operation_cancel
from fleet.models import Vps
from observability.models import ChannelDelivery
from observability.notifications import channel_create, channel_deliveries_send
from sites import dns_check, services, tls
from sites.models import Site

pytestmark = pytest.mark.real  # a real DNS server answers

VPS_IP = "192.0.2.10"
CERT_EVENTS = ["certificate.issued", "certificate.failed", "certificate.expiring"]


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory):
    from devstack.pebble import start_dns_test_server

    try:
        server = start_dns_test_server(tmp_path_factory.mktemp("challtestsrv"))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


class Dns:
    """The DNS server as a test's customer DNS: names it points are forgotten after the test."""

    def __init__(self, server):
        self.server, self.pointed = server, set()

    def point(self, name: str, *addresses: str) -> None:
        self.pointed.add(name)
        self.server.point(name, *addresses)

    def forget(self) -> None:
        for name in self.pointed:
            requests.post(f"{self.server.management_url}/clear-a", json={"host": f"{name}."}, timeout=5)


@pytest.fixture
def dns(dns_server, settings):
    settings.TLS_DNS_RESOLVERS = [dns_server.dns_server]
    settings.LOCAL_DNS_MANAGEMENT_URL = ""
    customer = Dns(dns_server)
    yield customer
    customer.forget()


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1",
        provider="manual",
        ip_address=VPS_IP,
        status="active",
        max_sites=50,
        php_versions=["8.2"],
    )


def _serving_site(persona, domain: str, *, aliases=(), tls="auto") -> Site:
    """A site created through the API whose first deploy has just switched its release live."""
    body = {"domain": domain, "type": "static", "aliases": list(aliases), "tls": tls}
    response = persona.client().post("/api/v1/sites", body, format="json")
    assert response.status_code == 202, response.content
    site = Site.objects.select_related("vps", "tenant").get(pk=response.json()["id"])
    services.site_release_switched(site=site, release="20250101T000000-aaaaaa", deployed=True)
    site.refresh_from_db()
    return site


def _ssl_ops(site) -> list[Operation]:
    return list(Operation.objects.filter(kind="site.ssl", target_id=str(site.pk)))


def _mailed(persona, events) -> None:
    channel_create(tenant=persona.tenant, kind="email", address="ops@acme.test", events=events)


def _delivered() -> list[str]:
    channel_deliveries_send()
    return [m.subject for m in mail.outbox]


def test_it_shows_tls_mode_and_state_and_refuses_an_unknown_mode(alice, vps):
    bad = alice.client().post(
        "/api/v1/sites", {"domain": "a.example.com", "type": "static", "tls": "sometimes"}, format="json"
    )
    assert bad.status_code == 400 and "tls" in bad.json()["error"]["fields"]
    created = alice.client().post(
        "/api/v1/sites", {"domain": "a.example.com", "type": "static"}, format="json"
    )
    assert created.json()["tls"] == {
        "mode": "auto",
        "state": "",
        "reason": "",
        "waiting_since": None,
        "next_check_at": None,
    }
    manual = alice.client().post(
        "/api/v1/sites", {"domain": "b.example.com", "type": "static", "tls": "manual"}, format="json"
    )
    assert manual.json()["tls"]["mode"] == "manual"
    # Creating a site queues its first deploy and nothing else.
    assert list(Operation.objects.values_list("kind", flat=True)) == ["site.deploy", "site.deploy"]


def test_it_starts_waiting_for_dns_when_an_auto_site_first_serves_and_queues_nothing(alice, vps):
    before = timezone.now()
    site = _serving_site(alice, "shop.example.com")
    assert site.tls_state == "waiting_dns" and site.tls_waiting_since >= before
    assert site.tls_next_check_at == site.tls_waiting_since
    manual = _serving_site(alice, "manual.example.com", tls="manual")
    assert manual.tls_state == "" and manual.tls_next_check_at is None
    assert _ssl_ops(site) == [] and _ssl_ops(manual) == []
    detail = alice.client().get(f"/api/v1/sites/{site.pk}").json()
    assert detail["tls"]["state"] == "waiting_dns" and detail["tls"]["waiting_since"]

    # A second deploy does not restart the wait.
    Site.objects.filter(pk=site.pk).update(tls_state="active", tls_next_check_at=None)
    site.refresh_from_db()
    services.site_release_switched(site=site, release="20250102T000000-bbbbbb", deployed=True)
    site.refresh_from_db()
    assert site.tls_state == "active"


def test_it_queues_one_certificate_once_every_name_resolves_to_the_vps(alice, vps, dns):
    site = _serving_site(alice, "shop.example.com", aliases=["www.shop.example.com"])
    dns.point("shop.example.com", VPS_IP)
    dns.point("www.shop.example.com", VPS_IP)
    assert tls.tls_checks_run() == {"issuing": 1, "waiting_dns": 0, "failed": 0}
    site.refresh_from_db()
    assert (site.tls_state, site.tls_reason, site.tls_next_check_at) == ("issuing", "", None)
    (op,) = _ssl_ops(site)
    assert op.status == "queued" and not op.requested_by_tenant  # the platform's work, not the tenant's quota
    assert tls.tls_checks_run(now=timezone.now() + timedelta(hours=1)) == {
        "issuing": 0,
        "waiting_dns": 0,
        "failed": 0,
    }
    assert len(_ssl_ops(site)) == 1


def test_it_keeps_waiting_saying_where_each_name_points_and_backs_off_to_an_hour(alice, vps, dns):
    site = _serving_site(alice, "shop.example.com", aliases=["www.shop.example.com"])
    dns.point("shop.example.com", VPS_IP)
    dns.point("www.shop.example.com", "198.51.100.7")
    now = timezone.now()
    delays = []
    for _ in range(8):
        assert tls.tls_checks_run(now=now)["waiting_dns"] == 1
        site.refresh_from_db()
        delays.append(site.tls_next_check_at - now)
        now = site.tls_next_check_at
    assert delays == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 60, 60)]
    assert site.tls_state == "waiting_dns" and site.tls_checks == 8
    assert "www.shop.example.com resolves to 198.51.100.7" in site.tls_reason
    assert "shop.example.com resolves" not in site.tls_reason.replace("www.shop.example.com", "")
    assert f"point only at {VPS_IP}" in site.tls_reason
    # Not due before its next check.
    assert tls.tls_checks_run(now=now - timedelta(seconds=1))["waiting_dns"] == 0
    assert _ssl_ops(site) == []


def test_it_names_a_missing_name_and_an_unanswering_resolver(alice, vps, dns, settings):
    site = _serving_site(alice, "shop.example.com")
    assert dns_check.lookup("shop.example.com").addresses == {"127.0.0.1"}  # challtestsrv's default
    tls.tls_checks_run()
    site.refresh_from_db()
    assert "shop.example.com resolves to 127.0.0.1" in site.tls_reason

    settings.TLS_DNS_RESOLVERS, settings.TLS_DNS_TIMEOUT_SECONDS = ["127.0.0.1:9"], 0.5
    Site.objects.filter(pk=site.pk).update(tls_next_check_at=timezone.now())
    tls.tls_checks_run()
    site.refresh_from_db()
    assert site.tls_state == "waiting_dns" and "could not be looked up" in site.tls_reason


def test_it_fails_after_48_hours_and_tells_the_tenant(alice, vps, dns):
    _mailed(alice, CERT_EVENTS)
    site = _serving_site(alice, "late.example.com")
    Site.objects.filter(pk=site.pk).update(tls_waiting_since=timezone.now() - timedelta(hours=48, seconds=1))
    assert tls.tls_checks_run()["failed"] == 1
    site.refresh_from_db()
    assert site.tls_state == "failed" and site.tls_next_check_at is None
    assert f"did not resolve to {VPS_IP} within 48 h" in site.tls_reason
    assert "127.0.0.1" in site.tls_reason
    assert _delivered() == [f"[CHOM] certificate.failed late.example.com: {site.tls_reason}"[:200]]
    # Final: not checked again.
    assert tls.tls_checks_run(now=timezone.now() + timedelta(days=1)) == {
        "issuing": 0,
        "waiting_dns": 0,
        "failed": 0,
    }
    assert _ssl_ops(site) == []


def test_it_retries_a_failed_issuance_inside_the_window_and_tells_the_tenant_once(alice, vps, dns):
    _mailed(alice, CERT_EVENTS)
    site = _serving_site(alice, "retry.example.com")
    dns.point("retry.example.com", VPS_IP)
    tls.tls_checks_run()
    (first,) = _ssl_ops(site)
    operation_cancel(operation=first)  # the failure handler runs as after any failed issuance
    site.refresh_from_db()
    assert site.tls_state == "failed" and "could not be issued" in site.tls_reason
    assert site.tls_next_check_at >= timezone.now() + tls.ISSUE_RETRY_MIN - timedelta(seconds=5)
    assert [s.split(":")[0] for s in _delivered()] == ["[CHOM] certificate.failed retry.example.com"]

    # Due again: DNS is checked first, then a new certificate is queued; its failure is not news.
    later = site.tls_next_check_at
    assert tls.tls_checks_run(now=later)["issuing"] == 1
    second = Operation.objects.filter(kind="site.ssl", target_id=str(site.pk), status="queued").get()
    operation_cancel(operation=second)
    site.refresh_from_db()
    assert site.tls_state == "failed" and site.tls_next_check_at is not None
    assert len(_delivered()) == 1

    # Past the 48 h: the last failure is final and told.
    Site.objects.filter(pk=site.pk).update(tls_waiting_since=timezone.now() - timedelta(hours=49))
    tls.tls_checks_run(now=timezone.now() + timedelta(days=3))
    third = Operation.objects.filter(kind="site.ssl", target_id=str(site.pk), status="queued").get()
    operation_cancel(operation=third)
    site.refresh_from_db()
    assert site.tls_state == "failed" and site.tls_next_check_at is None
    assert len(_delivered()) == 2


def test_it_does_not_check_suspended_undeployed_or_going_away_sites(alice, vps, dns):
    suspended = _serving_site(alice, "held.example.com")
    deleting = _serving_site(alice, "gone.example.com")
    for name in ("held.example.com", "gone.example.com"):
        dns.point(name, VPS_IP)
    Site.objects.filter(pk=suspended.pk).update(status="suspended", suspended_reason="billing")
    services.site_delete_request(site=deleting)
    assert tls.tls_checks_run() == {"issuing": 0, "waiting_dns": 0, "failed": 0}
    # Unsuspended: checked at once.
    Site.objects.filter(pk=suspended.pk).update(status="active", suspended_reason="")
    assert tls.tls_checks_run()["issuing"] == 1
    assert _ssl_ops(deleting) == []


def test_it_waits_again_for_dns_when_an_alias_is_added_to_an_active_site(alice, vps, dns):
    site = _serving_site(alice, "shop.example.com")
    Site.objects.filter(pk=site.pk).update(tls_state="active", ssl_status="active", tls_next_check_at=None)
    site.refresh_from_db()
    services.site_update(site=site, aliases=[])  # nothing new: stays active
    site.refresh_from_db()
    assert site.tls_state == "active"
    services.site_update(site=site, aliases=["new.shop.example.com"])
    site.refresh_from_db()
    assert site.tls_state == "waiting_dns" and site.tls_next_check_at is not None
    tls.tls_checks_run()
    site.refresh_from_db()
    assert "new.shop.example.com resolves to 127.0.0.1" in site.tls_reason
    assert site.ssl_status == "active"  # the old certificate keeps serving meanwhile


@pytest.mark.django_db(transaction=True)
def test_it_never_lets_two_concurrent_runs_check_or_issue_for_the_same_site(alice, vps, dns):
    if connection.vendor != "postgresql":
        pytest.skip("row locks (select_for_update skip_locked) need PostgreSQL")
    sites = [_serving_site(alice, f"s{i}.example.com") for i in range(6)]
    for site in sites:
        dns.point(site.domain, VPS_IP)
    now, barrier, results = timezone.now(), threading.Barrier(2), []

    def run():
        barrier.wait()
        try:
            results.append(tls.tls_checks_run(now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["issuing"] for r in results) == 6
    for site in sites:
        assert len(_ssl_ops(site)) == 1
        site.refresh_from_db()
        assert (site.tls_state, site.tls_checks) == ("issuing", 1)


def test_it_tells_the_tenant_when_a_certificate_is_close_to_expiry_and_not_renewed(alice, vps):
    _mailed(alice, CERT_EVENTS)
    soon = _serving_site(alice, "soon.example.com")
    renewing = _serving_site(alice, "renewing.example.com")
    now = timezone.now()
    Site.objects.filter(pk=soon.pk).update(ssl_status="active", ssl_expires_at=now + timedelta(days=5))
    Site.objects.filter(pk=renewing.pk).update(ssl_status="active", ssl_expires_at=now + timedelta(days=25))
    renewals = tls.sites_renew_certificates(now=now)
    assert sorted(op.target_id for op in renewals) == sorted([str(soon.pk), str(renewing.pk)])
    (subject,) = _delivered()
    assert subject.startswith("[CHOM] certificate.expiring soon.example.com: The certificate for soon")
    assert "in 4 days" in mail.outbox[0].body or "in 5 days" in mail.outbox[0].body


def test_it_says_sites_are_down_when_their_server_stops_answering(alice, charlie, vps):
    from observability import services as observability

    _mailed(alice, ["site.down"])
    up = _serving_site(alice, "up.example.com")
    held = _serving_site(alice, "held.example.com")
    Site.objects.filter(pk=held.pk).update(status="suspended", suspended_reason="billing")
    elsewhere = Vps.objects.create(name="web-2", provider="manual", ip_address="192.0.2.11", status="active")
    Site.objects.create(
        tenant=alice.tenant, vps=elsewhere, domain="other.example.com", type="static", status="active"
    )

    observability.alert_raise(
        name="vps_unreachable", key="web-1", summary="missed 3 checks", labels={"vps": "web-1"}
    )
    observability.alert_raise(
        name="vps_unreachable", key="web-1", summary="missed 4 checks", labels={"vps": "web-1"}
    )
    assert _delivered() == [
        f"[CHOM] site.down up.example.com: {up.domain} is down: its server does not answer."
    ]

    # Prometheus's VpsDown through Alertmanager's webhook says the same about web-2's sites.
    observability.alertmanager_ingest(
        payload={
            "alerts": [
                {"status": "firing", "fingerprint": "f1", "labels": {"alertname": "VpsDown", "vps": "web-2"}},
                {
                    "status": "firing",
                    "fingerprint": "f2",
                    "labels": {"alertname": "DiskAlmostFull", "vps": "web-2"},
                },
            ]
        }
    )
    assert ChannelDelivery.objects.filter(event="site.down", site="other.example.com").count() == 1
    assert ChannelDelivery.objects.filter(event="site.down").count() == 2
