import json

import pytest
from stripe import _http_client

from chom.models import Operation
from chom.operations import operation_execute
from tests.billing.fake_stripe import FakeStripe, sign

WEBHOOK_SECRET = "whsec_test_secret"
PRICES = {"starter": "price_starter", "pro": "price_pro", "enterprise": "price_enterprise"}


@pytest.fixture
def fake_stripe(settings, monkeypatch):
    fake = FakeStripe().start()
    settings.STRIPE_SECRET_KEY = fake.api_key
    settings.STRIPE_API_BASE = fake.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_PRICE_STARTER = PRICES["starter"]
    settings.STRIPE_PRICE_PRO = PRICES["pro"]
    settings.STRIPE_PRICE_ENTERPRISE = PRICES["enterprise"]
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    settings.STRIPE_TIMEOUT = 5.0
    # The library's own retry backoff (0.5 s minimum) would only slow the suite down.
    monkeypatch.setattr(_http_client.HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(_http_client.HTTPClient, "MAX_DELAY", 0.02)
    yield fake
    fake.stop()


def deliver(client, event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None):
    """POST an event to /webhooks/stripe signed the way Stripe signs it."""
    payload = json.dumps(event)
    return client.post(
        "/webhooks/stripe",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(payload, secret, timestamp),
    )


def run_billing_operations() -> list[str]:
    """What the worker would do: run every queued billing.process_event once, oldest first."""
    queued = Operation.objects.filter(kind="billing.process_event", status="queued").order_by("created_at")
    return [operation_execute(operation_id=op.id) for op in queued]


def subscribe(fake: FakeStripe, tenant, tier: str, *, status: str = "active") -> dict:
    """A tenant with a Stripe customer and a subscription to `tier`, synced the way webhooks do."""
    from billing import services, stripe_client
    from billing.models import BillingAccount

    customer = fake.new_id("cus")
    fake.customers[customer] = {"id": customer, "object": "customer"}
    account, _ = BillingAccount.objects.update_or_create(
        tenant=tenant, defaults={"stripe_customer_id": customer}
    )
    sub = fake.subscription_create(customer=customer, price=PRICES[tier], status=status)
    services.billing_account_sync(
        account=account, subscription=stripe_client.subscription_retrieve(sub["id"])
    )
    return sub


def make_sites(
    tenant, count: int, *, site_type: str = "static", status: str = "active", start: int = 0
) -> list:
    from fleet.models import Vps
    from sites.models import Site

    vps, _ = Vps.objects.get_or_create(name="web-1", defaults={"provider": "manual", "status": "active"})
    return [
        Site.objects.create(
            tenant=tenant, vps=vps, domain=f"s{start + i}.{tenant.slug}.test", type=site_type, status=status
        )
        for i in range(count)
    ]
