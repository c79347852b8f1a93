"""CHOM's own gauges for the alert rules, and the dashboard fragments with their vendored charts."""

from datetime import timedelta

from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from chom.models import Operation
from observability.services import alert_raise
from tests.observability.factories import make_site, make_vps


def _metrics(client) -> str:
    return client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()


def test_it_exports_certificate_expiry_per_site(client, alice):
    site = make_site(alice.tenant, make_vps("web1"), "shop.acme.test")
    expires = timezone.now() + timedelta(days=10)
    site.ssl_status, site.ssl_expires_at = "active", expires
    site.save()
    samples = [
        s
        for family in text_string_to_metric_families(_metrics(client))
        if family.name == "chom_site_certificate_expiry_timestamp_seconds"
        for s in family.samples
    ]
    assert [(s.labels, s.value) for s in samples] == [
        ({"site": site.unix_user, "domain": "shop.acme.test", "tenant": "acme"}, expires.timestamp())
    ]


def _samples(client, name: str) -> dict[str, float]:
    return {
        s.labels["domain"]: s.value
        for family in text_string_to_metric_families(_metrics(client))
        if family.name == name
        for s in family.samples
    }


def test_it_exports_last_backup_failure_and_last_verification_per_site(client, alice):
    from backups.models import Backup

    vps = make_vps("web1")
    failing = make_site(alice.tenant, vps, "failing.acme.test")
    verified = make_site(alice.tenant, vps, "verified.acme.test")
    never = make_site(alice.tenant, vps, "new.acme.test")
    checked = timezone.now() - timedelta(days=2)
    Backup.objects.create(site=failing, status="succeeded", verified_at=checked - timedelta(days=20))
    Backup.objects.create(site=failing, status="failed")
    Backup.objects.create(site=verified, status="failed")
    Backup.objects.create(site=verified, status="succeeded", verified_at=checked)
    Backup.objects.create(site=verified, status="running")  # unfinished: does not count
    failed = _samples(client, "chom_site_backup_last_failed")
    assert failed == {"failing.acme.test": 1.0, "verified.acme.test": 0.0, "new.acme.test": 0.0}
    stamps = _samples(client, "chom_site_backup_last_verified_timestamp_seconds")
    assert stamps["verified.acme.test"] == checked.timestamp()
    assert stamps["failing.acme.test"] == (checked - timedelta(days=20)).timestamp()
    assert stamps["new.acme.test"] == never.created_at.timestamp()  # the 8-day grace starts at creation


def test_it_counts_stale_operations(client, db, settings):
    settings.OPERATION_STALE_GRACE_SECONDS = 60
    assert "chom_operations_stale 0.0" in _metrics(client)
    past = timezone.now() - timedelta(hours=1)
    Operation.objects.create(kind="vps.bootstrap", status="running", started_at=past, deadline_at=past)
    Operation.objects.create(
        kind="vps.bootstrap", status="running", deadline_at=timezone.now() + timedelta(hours=1)
    )
    assert "chom_operations_stale 1.0" in _metrics(client)


def test_it_counts_firing_alerts_by_severity(client, db):
    alert_raise(name="x", key="1", summary="s", severity="critical")
    body = _metrics(client)
    assert 'chom_alerts_firing{severity="critical"} 1.0' in body
    assert 'chom_alerts_firing{severity="warning"} 0.0' in body


def test_it_renders_vps_and_site_pages_with_charts_from_our_own_static_files(
    alice, django_user_model, settings
):
    settings.PROMETHEUS_URL, settings.LOKI_URL = "http://prometheus.test", "http://loki.test"
    vps = make_vps("web1")
    site = make_site(alice.tenant, vps, "shop.acme.test")
    request = RequestFactory().get("/")
    request.user = django_user_model.objects.create_user("ops", is_staff=True)
    vps_page = render_to_string(
        "observability/vps_detail.html", {"vps": vps, "site_count": 1, "operations": []}, request
    )
    assert f'data-url="/observability/vps/{vps.pk}/metrics.json"' in vps_page
    site_page = render_to_string(
        "observability/site_detail.html", {"site": site, "releases": [], "operations": []}, request
    )
    assert f'data-url="/observability/sites/{site.pk}/logs.json"' in site_page
    assert f'data-url="/observability/sites/{site.pk}/metrics.json"' in site_page
    assert 'data-combine="latency:latency_p50,latency_p95"' in site_page  # one chart for both
    assert site_page.count("uPlot.iife.min.js") == 1
    assert "/static/observability/vendor/uplot/uPlot.iife.min.js" in site_page
    assert "cdn" not in (vps_page + site_page).lower()
    for path in ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE"):
        assert finders.find(f"observability/vendor/uplot/{path}")
    assert finders.find("observability/charts.js")


def test_it_says_an_integration_is_not_configured_instead_of_fetching_what_can_only_fail(
    alice, django_user_model, settings
):
    """Without PROMETHEUS_URL / LOKI_URL the pages never call the JSON endpoints (which answer 503)."""
    settings.PROMETHEUS_URL = settings.LOKI_URL = ""
    vps = make_vps("web1")
    site = make_site(alice.tenant, vps, "shop.acme.test")
    request = RequestFactory().get("/")
    request.user = django_user_model.objects.create_user("ops", is_staff=True)
    vps_page = render_to_string(
        "observability/vps_detail.html", {"vps": vps, "site_count": 1, "operations": []}, request
    )
    site_page = render_to_string(
        "observability/site_detail.html", {"site": site, "releases": [], "operations": []}, request
    )
    assert "PROMETHEUS_URL is not configured" in vps_page and "metrics.json" not in vps_page
    assert "LOKI_URL is not configured" in site_page and "logs.json" not in site_page
    assert "PROMETHEUS_URL is not configured" in site_page and "metrics.json" not in site_page


def test_it_charts_a_sites_traffic_from_prometheus_without_loki(alice, django_user_model, settings):
    settings.PROMETHEUS_URL, settings.LOKI_URL = "http://prometheus.test", ""
    site = make_site(alice.tenant, make_vps("web1"), "shop.acme.test")
    request = RequestFactory().get("/")
    request.user = django_user_model.objects.create_user("ops", is_staff=True)
    site_page = render_to_string(
        "observability/site_detail.html", {"site": site, "releases": [], "operations": []}, request
    )
    assert f'data-url="/observability/sites/{site.pk}/metrics.json"' in site_page
    assert "LOKI_URL is not configured: no logs" in site_page and "logs.json" not in site_page
    assert "charts.js" in site_page
