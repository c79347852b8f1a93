"""A failed backup reaches the tenant's notification channels (backups emits `backup.failed`
through core's event registry; observability delivers it)."""

import pytest
from django.core import mail
from django.test import override_settings

from backups import services
from backups.models import Backup
from chom.models import Operation
from chom.operations import operation_cancel, operation_execute
from fleet.models import Vps
from observability.notifications import channel_create, channel_deliveries_send
from sites.models import Site


@pytest.fixture
def site(alice):
    vps = Vps.objects.create(
        name="web-1", provider="manual", ip_address="127.0.0.1", ssh_port=1, status="active"
    )
    return Site.objects.create(
        tenant=alice.tenant,
        vps=vps,
        domain="shop.example.com",
        type="static",
        status="active",
        unix_user="site1",
    )


def test_it_tells_the_tenant_when_a_backup_fails_but_not_when_it_was_cancelled(s3, site, alice):
    channel_create(tenant=alice.tenant, kind="email", address="ops@acme.test", events=["backup.failed"])
    cancelled, op = services.backup_request(site=site)
    operation_cancel(operation=op)
    assert Backup.objects.get(pk=cancelled.pk).status == "failed"
    channel_deliveries_send()
    assert mail.outbox == []

    backup, op = services.backup_request(site=site)
    with override_settings(FLEET_SSH_CONNECT_TIMEOUT=0.5):
        operation_execute(operation_id=op.id)
    assert Operation.objects.get(pk=op.pk).status == "failed"
    channel_deliveries_send()
    (message,) = mail.outbox
    assert message.subject.startswith(f"[CHOM] backup.failed shop.example.com: The {backup.kind} backup of")
    assert "connect" in message.body
