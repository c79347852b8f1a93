"""Retention (time passed in as `now=`), schedules spread over the night, the daily report."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from backups import services
from backups.models import Backup
from devstack.s3 import BUCKET
from fleet.models import Vps
from sites.models import Site
from tests.backups.fixtures import keys

NOW = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def vps(db):
    return Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10", status="active")


def _site(tenant, vps, n):
    return Site.objects.create(
        tenant=tenant, vps=vps, domain=f"s{n}.example.com", type="php", status="active", unix_user=f"site{n}",
    )  # fmt: skip


def _backup(s3, site, days_ago, status="succeeded"):
    backup = Backup.objects.create(site=site, status=status, created_at=NOW - timedelta(days=days_ago))
    key = f"chom/{backup.prefix}manifest.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key=f"chom/{backup.prefix}files.tar.gz", Body=b"x")
    backup.manifest_key, backup.size_bytes = key, 3
    backup.save()
    return backup


def test_it_prunes_past_retention_but_keeps_the_newest_success_and_ignores_failures(s3, alice, vps):
    site = _site(alice.tenant, vps, 1)  # acme is "pro": 30 days
    old_ok = _backup(s3, site, 40)
    older_ok = _backup(s3, site, 35)
    old_failed = _backup(s3, site, 31, "failed")
    recent_failed = _backup(s3, site, 2, "failed")
    recent_ok = _backup(s3, site, 10)
    pruned = services.backups_prune(now=NOW)
    assert sorted(pruned) == sorted([old_ok.pk, older_ok.pk, old_failed.pk])
    assert set(Backup.objects.values_list("pk", flat=True)) == {recent_failed.pk, recent_ok.pk}
    assert keys(s3) == sorted(
        f"chom/{b.prefix}{name}"
        for b in (recent_failed, recent_ok)
        for name in ("files.tar.gz", "manifest.json")
    )


def test_it_never_deletes_the_newest_successful_backup_even_when_failures_are_newer(s3, alice, vps):
    site = _site(alice.tenant, vps, 1)
    keeper = _backup(s3, site, 60)
    _backup(s3, site, 50, "failed")
    _backup(s3, site, 1, "failed")
    services.backups_prune(now=NOW)
    assert list(site.backups.filter(status="succeeded")) == [keeper]
    assert f"chom/{keeper.prefix}manifest.json" in keys(s3)


def test_it_uses_each_tiers_retention(s3, charlie, vps):
    site = _site(charlie.tenant, vps, 2)  # starter: 7 days
    old = _backup(s3, site, 8)
    _backup(s3, site, 6)
    assert services.backups_prune(now=NOW) == [old.pk]


def test_it_spreads_daily_slots_over_the_night_window(settings):
    day = datetime(2030, 6, 15, tzinfo=UTC)
    slots = [services.site_slot(i, day) for i in range(1, 41)]
    assert all(day + timedelta(hours=1) <= s < day + timedelta(hours=6) for s in slots)
    assert len({(s.hour, s.minute // 10) for s in slots}) > 15  # not all at 02:00


def test_it_queues_due_sites_with_bounded_concurrency_per_vps(s3, alice, vps, settings):
    settings.BACKUP_CONCURRENCY_PER_VPS = 2
    sites = [_site(alice.tenant, vps, n) for n in range(1, 6)]
    late = datetime(2030, 6, 15, 7, 0, tzinfo=UTC)  # after every slot of the night
    first = services.backups_schedule_due(now=late)
    assert len(first) == 2 and {b.trigger for b in first} == {"scheduled"}
    assert services.backups_schedule_due(now=late) == []  # the VPS is busy
    Backup.objects.filter(pk__in=[b.pk for b in first]).update(status="succeeded")
    second = services.backups_schedule_due(now=late + timedelta(minutes=5))
    assert len(second) == 2 and not {b.site_id for b in second} & {b.site_id for b in first}
    assert {b.site_id for b in Backup.objects.all()} <= {s.pk for s in sites}


def test_it_does_not_queue_a_site_before_its_slot_or_twice_the_same_night(s3, alice, vps):
    site = _site(alice.tenant, vps, 1)
    slot = services.site_slot(site.pk, datetime(2030, 6, 15, tzinfo=UTC))
    Backup.objects.create(
        site=site, trigger="scheduled", status="succeeded", created_at=slot - timedelta(days=1)
    )
    assert services.backups_schedule_due(now=slot - timedelta(minutes=1)) == []
    assert len(services.backups_schedule_due(now=slot + timedelta(minutes=1))) == 1
    assert services.backups_schedule_due(now=slot + timedelta(hours=2)) == []


def test_it_emails_admins_the_failures_of_the_day(s3, alice, vps, settings):
    settings.ADMINS = [("ops", "ops@chom.test")]
    site = _site(alice.tenant, vps, 1)
    Backup.objects.create(site=site, status="failed", error="S3 upload failed: timeout", created_at=NOW)
    Backup.objects.create(site=site, status="succeeded", finished_at=NOW, created_at=NOW)
    assert services.backups_daily_report(now=NOW + timedelta(hours=1)) == 1
    (message,) = mail.outbox
    assert message.to == ["ops@chom.test"] and "1 problems" in message.subject
    assert "s1.example.com" in message.body and "S3 upload failed: timeout" in message.body


def test_it_refuses_to_start_with_half_configured_backups(settings):
    settings.BACKUPS_ENABLED, settings.S3_BUCKET = True, ""
    with pytest.raises(SystemCheckError, match="backups.E001"):
        call_command("check")
    settings.S3_BUCKET, settings.S3_ACCESS_KEY_ID, settings.S3_SECRET_ACCESS_KEY = "b", "key", ""
    with pytest.raises(SystemCheckError, match="backups.E002"):
        call_command("check")
