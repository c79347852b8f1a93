"""Stripe webhooks: verified, stored by id, processed exactly once, state taken from Stripe."""

import json
import time

import pytest

from billing import services
from billing.models import BillingAccount, StripeEvent
from chom.models import AuditEvent, Operation, Tenant
from chom.operations import operation_execute
from tests.billing.conftest import PRICES, deliver, run_billing_operations, subscribe
from tests.billing.fake_stripe import sign


def _checkout(alice, fake, tier: str) -> str:
    response = alice.client().post("/api/v1/billing/checkout", {"tier": tier}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["url"].rsplit("/", 1)[1]


def test_it_sets_the_tier_when_checkout_completes(
    alice, fake_stripe, client, django_capture_on_commit_callbacks
):
    session_id = _checkout(alice, fake_stripe, "enterprise")
    fake_stripe.assert_called(
        "POST",
        "/v1/checkout/sessions",
        mode="subscription",
        customer=alice.tenant.billing_account.stripe_customer_id,
    )
    session, sub = fake_stripe.checkout_complete(session_id)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = deliver(client, fake_stripe.event("checkout.session.completed", session))
    assert response.status_code == 200
    assert response.json()["duplicate"] is False
    # Stored and queued, not applied in the request.
    event = StripeEvent.objects.get()
    assert event.status == "received" and event.tenant == alice.tenant
    assert len(callbacks) == 1
    assert Tenant.objects.get(pk=alice.tenant.pk).tier == "pro"

    assert run_billing_operations() == ["succeeded"]
    tenant = Tenant.objects.get(pk=alice.tenant.pk)
    account = BillingAccount.objects.get(tenant=tenant)
    assert tenant.tier == "enterprise"
    assert (account.stripe_subscription_id, account.subscription_status) == (sub["id"], "active")
    assert account.current_period_end is not None
    assert StripeEvent.objects.get().status == "processed"
    change = AuditEvent.objects.get(action="billing.tier_changed")
    assert (
        change.data["from"] == "pro"
        and change.data["to"] == "enterprise"
        and change.data["direction"] == "upgrade"
    )


def test_it_applies_a_duplicate_or_replayed_event_once(alice, fake_stripe, client):
    session, _ = fake_stripe.checkout_complete(_checkout(alice, fake_stripe, "enterprise"))
    event = fake_stripe.event("checkout.session.completed", session)

    assert deliver(client, event).json()["duplicate"] is False
    assert deliver(client, event).json()["duplicate"] is True
    assert run_billing_operations() == ["succeeded"]
    # A retry after processing (Stripe did not see our 200) is acknowledged and changes nothing.
    replay = deliver(client, event)
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert run_billing_operations() == []

    stored = StripeEvent.objects.get()
    assert (stored.deliveries, stored.status) == (3, "processed")
    assert Operation.objects.filter(kind="billing.process_event").count() == 1
    assert AuditEvent.objects.filter(action="billing.tier_changed").count() == 1
    assert len(fake_stripe.calls("GET", f"/v1/subscriptions/{session['subscription']}")) == 1


def test_it_runs_a_redelivered_task_message_once(alice, fake_stripe, client):
    session, _ = fake_stripe.checkout_complete(_checkout(alice, fake_stripe, "enterprise"))
    deliver(client, fake_stripe.event("checkout.session.completed", session))
    op = Operation.objects.get(kind="billing.process_event")
    assert operation_execute(operation_id=op.id) == "succeeded"
    assert operation_execute(operation_id=op.id) == "skipped"
    assert (
        services.stripe_event_process(event_id=StripeEvent.objects.get().event_id)["outcome"]
        == "already applied"
    )
    assert AuditEvent.objects.filter(action="billing.tier_changed").count() == 1


def test_it_ends_in_the_state_stripe_reports_when_events_arrive_out_of_order(alice, fake_stripe, client):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    created = fake_stripe.event("customer.subscription.created", dict(sub))
    # The tenant upgrades, then downgrades to starter; the events arrive newest first.
    upgraded = fake_stripe.event(
        "customer.subscription.updated",
        fake_stripe.subscription_update(sub["id"], price=PRICES["enterprise"]),
    )
    downgraded = fake_stripe.event(
        "customer.subscription.updated", fake_stripe.subscription_update(sub["id"], price=PRICES["starter"])
    )
    for event in (downgraded, upgraded, created):
        assert deliver(client, event).status_code == 200
    assert run_billing_operations() == ["succeeded"] * 3

    assert Tenant.objects.get(pk=alice.tenant.pk).tier == "starter"
    assert BillingAccount.objects.get(tenant=alice.tenant).stripe_price_id == PRICES["starter"]


def test_it_ignores_a_late_deletion_of_a_replaced_subscription(alice, fake_stripe, client):
    old = subscribe(fake_stripe, alice.tenant, "pro")
    fake_stripe.subscription_update(old["id"], status="canceled")
    new = fake_stripe.subscription_create(customer=old["customer"], price=PRICES["enterprise"])
    deliver(client, fake_stripe.event("customer.subscription.created", new))
    deliver(client, fake_stripe.event("customer.subscription.deleted", fake_stripe.subscriptions[old["id"]]))
    run_billing_operations()

    account = BillingAccount.objects.get(tenant=alice.tenant)
    assert (account.stripe_subscription_id, account.subscription_status) == (new["id"], "active")
    assert Tenant.objects.get(pk=alice.tenant.pk).tier == "enterprise"
    assert "the tenant's is" in StripeEvent.objects.get(type="customer.subscription.deleted").outcome


def test_it_falls_back_to_starter_when_the_subscription_ends(alice, fake_stripe, client):
    sub = subscribe(fake_stripe, alice.tenant, "enterprise")
    deliver(
        client,
        fake_stripe.event(
            "customer.subscription.deleted", fake_stripe.subscription_update(sub["id"], status="canceled")
        ),
    )
    run_billing_operations()
    assert Tenant.objects.get(pk=alice.tenant.pk).tier == "starter"
    assert BillingAccount.objects.get(tenant=alice.tenant).subscription_status == "canceled"
    assert AuditEvent.objects.filter(action="billing.subscription_ended").exists()


@pytest.mark.parametrize(
    "how",
    ["wrong secret", "stale timestamp", "no header", "tampered body"],
)
def test_it_rejects_unverified_webhooks_and_stores_nothing(alice, fake_stripe, client, how, caplog):
    event = fake_stripe.event("invoice.paid", {"id": "in_1", "customer": "cus_x"})
    if how == "wrong secret":
        response = deliver(client, event, secret="whsec_wrong")
    elif how == "stale timestamp":
        response = deliver(client, event, timestamp=int(time.time()) - 600)
    elif how == "no header":
        response = client.post("/webhooks/stripe", data="{}", content_type="application/json")
    else:
        header = sign(json.dumps(event), "whsec_test_secret")
        event["type"] = "customer.subscription.deleted"
        response = client.post(
            "/webhooks/stripe",
            data=json.dumps(event),
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=header,
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert StripeEvent.objects.count() == 0
    assert Operation.objects.filter(kind="billing.process_event").count() == 0
    assert "rejected Stripe webhook" in caplog.text


def test_it_answers_503_when_webhooks_are_not_configured(client, db, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = client.post("/webhooks/stripe", data="{}", content_type="application/json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "billing_not_configured"


def test_it_records_but_ignores_events_it_does_not_act_on(alice, fake_stripe, client):
    deliver(client, fake_stripe.event("customer.created", {"id": "cus_other", "object": "customer"}))
    deliver(
        client,
        fake_stripe.event("invoice.paid", {"id": "in_9", "object": "invoice", "customer": "cus_unknown"}),
    )
    assert run_billing_operations() == ["succeeded", "succeeded"]
    outcomes = dict(StripeEvent.objects.values_list("type", "outcome"))
    assert StripeEvent.objects.filter(status="ignored").count() == 2
    assert "not an event CHOM acts on" in outcomes["customer.created"]
    assert "no CHOM tenant for Stripe customer cus_unknown" in outcomes["invoice.paid"]


def test_it_retries_when_stripe_is_down_then_fails_the_event_with_a_clear_reason(alice, fake_stripe, client):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    deliver(
        client,
        fake_stripe.event(
            "customer.subscription.updated",
            fake_stripe.subscription_update(sub["id"], price=PRICES["enterprise"]),
        ),
    )
    fake_stripe.fail("GET", "/v1/subscriptions/", status=503, times=None)
    op = Operation.objects.get(kind="billing.process_event")

    outcomes = [operation_execute(operation_id=op.id) for _ in range(op.max_attempts)]
    assert all(o.startswith("retry:") for o in outcomes[:-1]) and outcomes[-1] == "failed"
    op.refresh_from_db()
    assert "HTTP 503" in op.error and "it will be retried" in op.error
    event = StripeEvent.objects.get()
    assert event.status == "failed" and "HTTP 503" in event.outcome
    assert Tenant.objects.get(pk=alice.tenant.pk).tier == "pro"

    # Stripe is back: staff queue the event again (admin action) and it applies.
    fake_stripe._failures.clear()
    retry = services.stripe_event_retry(event=event)
    assert operation_execute(operation_id=retry.id) == "succeeded"
    assert StripeEvent.objects.get().status == "processed"
    assert Tenant.objects.get(pk=alice.tenant.pk).tier == "enterprise"


def test_it_fails_an_event_whose_price_is_not_a_tier(alice, fake_stripe, client):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    deliver(
        client,
        fake_stripe.event(
            "customer.subscription.updated", fake_stripe.subscription_update(sub["id"], price="price_unknown")
        ),
    )
    assert run_billing_operations() == ["failed"]
    assert "price_unknown" in StripeEvent.objects.get().outcome
    assert Tenant.objects.get(pk=alice.tenant.pk).tier == "pro"
