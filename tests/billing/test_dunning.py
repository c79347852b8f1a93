"""Dunning: payment failed → past_due with a grace period → sites suspended → paid → sites back."""

from datetime import timedelta

from django.core import mail
from django.utils import timezone

from billing import services
from billing.models import BillingAccount
from chom.models import AuditEvent, Operation, Tenant
from sites.models import Site
from tests.billing.conftest import deliver, make_sites, run_billing_operations, subscribe


def _fail_payment(fake, client, sub) -> None:
    fake.subscription_update(sub["id"], status="past_due")
    deliver(
        client,
        fake.event("invoice.payment_failed", fake.invoice_create(subscription=sub["id"], status="open")),
    )
    assert run_billing_operations() == ["succeeded"]


def _pay(fake, client, sub) -> None:
    fake.subscription_update(sub["id"], status="active")
    deliver(client, fake.event("invoice.paid", fake.invoice_create(subscription=sub["id"], status="paid")))
    assert run_billing_operations() == ["succeeded"]


def _reasons(sites) -> set[str]:
    return set(Site.objects.filter(pk__in=[s.pk for s in sites]).values_list("suspended_reason", flat=True))


def _site_operations(tenant, kind: str) -> set[int]:
    ops = Operation.objects.filter(tenant=tenant, kind=kind)
    return {int(target) for target in ops.values_list("target_id", flat=True)}


def _status(tenant) -> str:
    return Tenant.objects.get(pk=tenant.pk).status


def test_it_suspends_after_the_grace_period_and_restores_sites_when_paid(
    alice, fake_stripe, client, settings
):
    settings.BILLING_GRACE_DAYS = 7
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    live = make_sites(alice.tenant, 2)
    held = make_sites(alice.tenant, 1, status="suspended", start=5)[0]
    Site.objects.filter(pk=held.pk).update(suspended_reason="abuse")
    mail.outbox.clear()
    started = timezone.now()

    _fail_payment(fake_stripe, client, sub)
    account = BillingAccount.objects.get(tenant=alice.tenant)
    assert _status(alice.tenant) == "past_due"
    assert started + timedelta(days=7) <= account.grace_until <= timezone.now() + timedelta(days=7)
    assert mail.outbox[-1].to == ["alice@acme.test"] and "payment failed" in mail.outbox[-1].subject

    assert services.tenant_dunning_enforce(now=started + timedelta(days=6)) == {}
    assert _status(alice.tenant) == "past_due"

    result = services.tenant_dunning_enforce(now=started + timedelta(days=8))
    assert result == {"acme": "suspended, 2 site(s) being suspended"}
    assert _status(alice.tenant) == "suspended"
    # The sites service marks them and queues the remote work (which flips their status).
    assert _reasons(live) == {"billing_unpaid"}
    assert _site_operations(alice.tenant, "site.suspend") == {s.pk for s in live}
    assert "sites suspended" in mail.outbox[-1].subject
    assert services.tenant_dunning_enforce(now=started + timedelta(days=9)) == {}  # once

    _pay(fake_stripe, client, sub)
    assert _status(alice.tenant) == "active"
    account.refresh_from_db()
    assert (account.past_due_since, account.grace_until, account.suspended_at) == (None, None, None)
    assert _reasons(live) == {""}
    assert _site_operations(alice.tenant, "site.unsuspend") == {s.pk for s in live}
    assert Site.objects.get(pk=held.pk).suspended_reason == "abuse"  # suspended for another reason: stays
    assert "payment received" in mail.outbox[-1].subject
    actions = list(
        AuditEvent.objects.filter(action__startswith="billing.", tenant=alice.tenant)
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )
    assert actions == ["billing.past_due", "billing.suspended", "billing.restored"]


def test_it_restores_without_suspending_when_paid_within_the_grace_period(alice, fake_stripe, client):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    make_sites(alice.tenant, 2)
    _fail_payment(fake_stripe, client, sub)
    _pay(fake_stripe, client, sub)
    assert _status(alice.tenant) == "active"
    assert services.tenant_dunning_enforce(now=timezone.now() + timedelta(days=30)) == {}
    assert _reasons(Site.objects.filter(tenant=alice.tenant)) == {""}
    assert not Operation.objects.filter(tenant=alice.tenant, kind="site.suspend").exists()


def test_it_asks_stripe_before_suspending_so_a_lost_webhook_costs_no_sites(alice, fake_stripe, client):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    make_sites(alice.tenant, 1)
    _fail_payment(fake_stripe, client, sub)
    fake_stripe.subscription_update(sub["id"], status="active")  # paid, but invoice.paid never arrived

    result = services.tenant_dunning_enforce(now=timezone.now() + timedelta(days=8))
    assert result == {"acme": "paid meanwhile: restored"}
    assert _status(alice.tenant) == "active"
    assert Site.objects.get(tenant=alice.tenant).suspended_reason == ""


def test_it_does_not_suspend_while_stripe_cannot_confirm(alice, fake_stripe, client):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    _fail_payment(fake_stripe, client, sub)
    fake_stripe.fail("GET", "/v1/subscriptions/", status=503, times=None)
    result = services.tenant_dunning_enforce(now=timezone.now() + timedelta(days=8))
    assert result["acme"].startswith("not suspended, Stripe unavailable: Stripe failed to fetch subscription")
    assert _status(alice.tenant) == "past_due"


def test_it_ignores_a_payment_failure_that_stripe_already_sees_as_paid(alice, fake_stripe, client):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    failed = fake_stripe.invoice_create(subscription=sub["id"], status="open")
    paid = fake_stripe.invoice_create(subscription=sub["id"], status="paid")
    deliver(client, fake_stripe.event("invoice.paid", paid))
    deliver(client, fake_stripe.event("invoice.payment_failed", failed))  # late
    run_billing_operations()
    assert _status(alice.tenant) == "active"
    assert not AuditEvent.objects.filter(action="billing.past_due").exists()


def test_it_leaves_a_tenant_suspended_by_staff_alone_when_an_invoice_is_paid(alice, fake_stripe, client):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    Tenant.objects.filter(pk=alice.tenant.pk).update(status="suspended")
    _pay(fake_stripe, client, sub)
    assert _status(alice.tenant) == "suspended"
