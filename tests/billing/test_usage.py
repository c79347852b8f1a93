"""Daily usage to Stripe meters: one report per tenant, day and metric, whatever the reruns."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import services
from billing.models import UsageReport
from tests.billing.conftest import make_sites, subscribe


@pytest.fixture(autouse=True)
def _meter_sites_only(settings):
    """Most tests count events of one metric; those about other metrics set their own list."""
    settings.BILLING_METERED_METRICS = ["sites"]


def test_it_reports_usage_once_per_tenant_and_day_even_when_run_twice(alice, charlie, fake_stripe):
    subscribe(fake_stripe, alice.tenant, "pro")
    subscribe(fake_stripe, charlie.tenant, "starter")
    make_sites(alice.tenant, 3)
    make_sites(alice.tenant, 1, status="deleted", start=9)
    now = timezone.now()

    first = services.usage_report_daily(now=now)
    make_sites(alice.tenant, 1, start=20)  # usage changes during the day: the day's report is fixed
    # Later the same (UTC) day: three hours on, or the day's last second when that is sooner
    # (a run after 21:00 must not cross midnight).
    later = min(now + timedelta(hours=3), now.replace(hour=23, minute=59, second=59, microsecond=0))
    second = services.usage_report_daily(now=later)

    assert (first["sent"], first["already_sent"]) == (2, 0)
    assert (second["sent"], second["already_sent"]) == (0, 2)
    sent = {(e["payload"]["stripe_customer_id"], e["event_name"]): e for e in fake_stripe.meter_events}
    assert len(fake_stripe.meter_events) == 2
    alice_customer = alice.tenant.billing_account.stripe_customer_id
    event = sent[(alice_customer, "chom_usage_sites")]
    assert event["payload"]["value"] == "3"
    assert event["identifier"] == f"chom-{alice.tenant.pk}-sites-{now:%Y%m%d}"
    call = fake_stripe.assert_called("POST", "/v1/billing/meter_events", identifier=event["identifier"])[0]
    assert call.headers["Idempotency-Key"] == event["identifier"]

    # The next day is a new report (Stripe's clock moves with CHOM's: it refuses events from its future).
    fake_stripe.clock = lambda: (now + timedelta(days=1)).timestamp()
    services.usage_report_daily(now=now + timedelta(days=1))
    assert len(fake_stripe.meter_events) == 4
    assert UsageReport.objects.filter(tenant=alice.tenant, metric="sites").count() == 2


def test_it_resends_a_failed_report_with_the_same_identifier_and_value(alice, fake_stripe):
    subscribe(fake_stripe, alice.tenant, "pro")
    make_sites(alice.tenant, 2)
    fake_stripe.fail("POST", "/v1/billing/meter_events", status=503, times=None)
    now = timezone.now()

    assert services.usage_report_daily(now=now)["failed"] == 1
    report = UsageReport.objects.get()
    assert report.status == "pending" and "HTTP 503" in report.error and report.attempts == 1

    fake_stripe._failures.clear()
    make_sites(alice.tenant, 1, start=5)
    assert services.usage_report_daily(now=now + timedelta(minutes=30))["sent"] == 1
    report.refresh_from_db()
    assert (report.status, report.error, report.attempts) == ("sent", "", 2)
    assert [e["payload"]["value"] for e in fake_stripe.meter_events] == ["2"]
    keys = {c.headers["Idempotency-Key"] for c in fake_stripe.calls("POST", "/v1/billing/meter_events")}
    assert keys == {report.identifier}


def test_it_records_stripes_refusal_of_a_report_older_than_its_window_and_does_not_retry(alice, fake_stripe):
    subscribe(fake_stripe, alice.tenant, "pro")
    stale = timezone.now() - timedelta(days=36)
    report = UsageReport.objects.create(
        tenant=alice.tenant,
        day=stale.date(),
        metric="sites",
        quantity=Decimal(2),
        identifier=f"chom-{alice.tenant.pk}-sites-{stale:%Y%m%d}",
        stripe_customer_id=alice.tenant.billing_account.stripe_customer_id,
        created_at=stale,
    )
    assert services.usage_report_send(report=report) is False
    report.refresh_from_db()
    assert (report.status, report.attempts) == ("pending", 1)
    assert "Stripe rejected the request to report usage" in report.error and "HTTP 400" in report.error
    assert "within the past 35 calendar days" in report.error
    assert len(fake_stripe.calls("POST", "/v1/billing/meter_events")) == 1 and not fake_stripe.meter_events


def test_it_meters_only_subscribed_tenants_and_says_what_it_cannot_meter(alice, charlie, fake_stripe):
    subscribe(fake_stripe, alice.tenant, "pro")
    result = services.usage_report_daily()
    assert result["sent"] == 1
    assert {e["payload"]["stripe_customer_id"] for e in fake_stripe.meter_events} == {
        alice.tenant.billing_account.stripe_customer_id
    }
    assert result["unmetered"] == []


def test_it_says_what_it_cannot_meter(alice, fake_stripe, settings):
    settings.BILLING_METERED_METRICS = ["sites", "bandwidth_gb"]
    subscribe(fake_stripe, alice.tenant, "pro")
    assert services.usage_report_daily()["unmetered"] == ["bandwidth_gb"]


def test_it_meters_sites_and_backup_storage_from_the_real_counters(alice, fake_stripe, settings):
    from backups.models import Backup
    from fleet.models import Vps
    from sites.models import Site

    settings.BILLING_METERED_METRICS = ["sites", "backup_storage_gb"]
    vps = Vps.objects.create(name="web", provider="manual", status="active")
    site = Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="a.example.com", type="static", status="active"
    )
    Backup.objects.create(site=site, status=Backup.Status.SUCCEEDED, size_bytes=1_500_000_000)
    Backup.objects.create(site=site, status=Backup.Status.FAILED, size_bytes=9_000_000_000)
    subscribe(fake_stripe, alice.tenant, "pro")
    services.usage_report_daily()
    values = {e["event_name"]: e["payload"]["value"] for e in fake_stripe.meter_events}
    assert values == {"chom_usage_sites": "1", "chom_usage_backup_storage_gb": "1.5"}


def test_it_does_not_meter_when_billing_is_off(alice, settings, db):
    settings.STRIPE_SECRET_KEY = ""
    assert "skipped" in services.usage_report_daily()
    assert UsageReport.objects.count() == 0
