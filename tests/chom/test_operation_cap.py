"""The per-tenant cap on operations a tenant itself requests (issue 14): one more than its tier
allows is refused with 429; the platform's own work (renewals, scheduled backups, staff) is never
refused and never counts."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from backups import services as backup_services
from backups.models import Backup
from chom.errors import ApplicationError
from chom.models import Operation, Tenant
from chom.operations import operation_claim, operation_create, operation_execute, register
from chom.services import tenant_create
from chom.tiers import limits_for
from fleet.models import Vps
from sites.models import Site
from sites.tls import sites_renew_certificates
from tests.backups.fixtures import moto_s3, s3  # noqa: F401 - shared fixtures

CAP = limits_for("starter").max_pending_operations


@register("test.cap", max_attempts=1)
def _noop(ctx):
    return {}


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", php_versions=["8.2"]
    )


def _site(tenant, vps, n: int) -> Site:
    return Site.objects.create(
        tenant=tenant,
        vps=vps,
        domain=f"s{n}.example.com",
        type="php",
        php_version="8.2",
        status="active",
        unix_user=f"site{n}",
        current_release="20240101T000000-abc123",
    )


@pytest.fixture
def site(alice, vps) -> Site:
    Tenant.objects.filter(pk=alice.tenant.pk).update(tier="starter")
    return _site(alice.tenant, vps, 1)


def _requested(tenant, *, kind="test.cap", target=None, key=None) -> Operation:
    with transaction.atomic():
        return operation_create(
            kind=kind, tenant=tenant, target=target, idempotency_key=key, requested_by_tenant=True
        )


def _fill(tenant, count: int = CAP) -> list[Operation]:
    return [_requested(tenant) for _ in range(count)]


def _deploy(persona, site):
    return persona.client().post(f"/api/v1/sites/{site.pk}/deploy")


def _assert_refused(response) -> None:
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert error["code"] == "too_many_operations" and error["fields"] == {}
    assert f"allows {CAP} at a time" in error["message"] and "frees up" in error["message"]
    assert int(response["Retry-After"]) > 0


def test_it_refuses_a_deploy_beyond_the_cap_with_429_and_creates_no_operation(alice, site):
    for _ in range(CAP):
        assert _deploy(alice, site).status_code == 202
    assert Operation.objects.filter(tenant=alice.tenant, requested_by_tenant=True).count() == CAP

    _assert_refused(_deploy(alice, site))
    assert Operation.objects.count() == CAP


def test_it_counts_running_operations_and_frees_a_slot_when_one_finishes(alice, site):
    first, second, *_ = _fill(alice.tenant)
    assert operation_claim(operation_id=first.pk).status == Operation.Status.RUNNING
    _assert_refused(_deploy(alice, site))

    assert operation_execute(operation_id=second.pk) == Operation.Status.SUCCEEDED
    assert _deploy(alice, site).status_code == 202
    _assert_refused(_deploy(alice, site))


def test_it_refuses_update_delete_and_backup_requests_without_changing_anything(s3, alice, site):  # noqa: F811 - fixture imported above
    _fill(alice.tenant)
    client = alice.client()

    _assert_refused(
        client.patch(f"/api/v1/sites/{site.pk}", {"aliases": ["www.s1.example.com"]}, format="json")
    )
    _assert_refused(client.delete(f"/api/v1/sites/{site.pk}"))
    _assert_refused(client.post(f"/api/v1/sites/{site.pk}/backups", {}, format="json"))

    site.refresh_from_db()
    assert (site.aliases, site.status) == ([], "active")
    assert not Backup.objects.exists()
    assert Operation.objects.count() == CAP


def test_it_never_refuses_nor_counts_certificate_renewals(alice, site):
    first, *_ = _fill(alice.tenant)
    Site.objects.filter(pk=site.pk).update(
        ssl_status="active", ssl_expires_at=timezone.now() + timedelta(days=3)
    )

    (renewal,) = sites_renew_certificates()
    assert (renewal.kind, renewal.status, renewal.requested_by_tenant) == ("site.ssl", "queued", False)

    assert operation_execute(operation_id=first.pk) == Operation.Status.SUCCEEDED
    assert _deploy(alice, site).status_code == 202  # the renewal did not take the freed slot


def test_it_never_refuses_nor_counts_scheduled_backups(s3, alice, site):  # noqa: F811 - fixture imported above
    first, *_ = _fill(alice.tenant)

    (backup,) = backup_services.backups_schedule_due(now=datetime(2030, 6, 15, 7, 0, tzinfo=UTC))
    op = Operation.objects.get(kind="backup.run")
    assert (backup.trigger, op.status, op.requested_by_tenant) == ("scheduled", "queued", False)

    assert operation_execute(operation_id=first.pk) == Operation.Status.SUCCEEDED
    assert _deploy(alice, site).status_code == 202


def test_it_never_refuses_operations_created_without_the_flag(alice, site):
    _fill(alice.tenant)
    with transaction.atomic():
        op = operation_create(kind="test.cap", tenant=alice.tenant)
    assert not op.requested_by_tenant
    _assert_refused(_deploy(alice, site))


def test_it_does_not_count_staff_actions_on_a_tenants_site(alice, staff, site):
    _fill(alice.tenant)
    response = staff.client().delete(f"/api/v1/sites/{site.pk}")
    assert response.status_code == 202, response.content
    assert not Operation.objects.get(id=response.json()["operation"]["id"]).requested_by_tenant


def test_it_answers_an_idempotent_replay_at_the_cap(alice, site):
    _fill(alice.tenant, CAP - 1)
    keyed = _requested(alice.tenant, key="deploy-42")
    _assert_refused(_deploy(alice, site))

    assert _requested(alice.tenant, key="deploy-42") == keyed
    assert Operation.objects.count() == CAP


def test_it_leaves_other_tenants_unaffected(alice, charlie, site, vps):
    _fill(alice.tenant)
    _assert_refused(_deploy(alice, site))
    assert _deploy(charlie, _site(charlie.tenant, vps, 2)).status_code == 202


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="needs concurrent connections (PostgreSQL, as in CI)"
)
def test_it_lets_only_one_of_concurrent_requests_take_the_last_slot(transactional_db):
    tenant, _ = tenant_create(slug="racer", tier="starter", owner_email="o@racer.test")
    _fill(tenant, CAP - 1)
    barrier = threading.Barrier(4)
    outcomes: list = []

    def request():
        try:
            barrier.wait(timeout=10)
            outcomes.append(_requested(tenant))
        except ApplicationError as exc:
            outcomes.append(exc.code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(o if isinstance(o, str) else "created" for o in outcomes) == [
        "created",
        *["too_many_operations"] * 3,
    ]
    assert Operation.objects.filter(tenant=tenant, status="queued").count() == CAP
