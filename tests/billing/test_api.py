"""/api/v1/billing*: tenant tokens only, owners/admins for checkout and portal, one error shape."""

import pytest
from django.core import mail

from billing.models import BillingAccount
from chom.models import Membership, Tenant
from chom.services import membership_add, token_create
from sites.models import Site
from sites.selectors import tenant_over_limits
from tests.billing.conftest import PRICES, deliver, make_sites, run_billing_operations, subscribe
from tests.conftest import Persona


@pytest.fixture
def adam(acme):
    """An admin of acme."""
    membership = membership_add(tenant=acme[0], email="adam@acme.test", role=Membership.Role.ADMIN)
    return Persona(
        membership.user, acme[0], token_create(user=membership.user, tenant=acme[0], name="t").plaintext
    )


def test_it_gives_owners_and_admins_a_checkout_url(alice, adam, fake_stripe):
    for persona in (alice, adam):
        response = persona.client().post("/api/v1/billing/checkout", {"tier": "starter"}, format="json")
        assert response.status_code == 201
        assert response.json()["url"].startswith("https://checkout.stripe.test/c/cs_")
    # One Stripe customer for the tenant, created with an idempotency key, reused afterwards.
    assert len(fake_stripe.customers) == 1
    customer = BillingAccount.objects.get(tenant=alice.tenant).stripe_customer_id
    calls = fake_stripe.assert_called("POST", "/v1/checkout/sessions", times=2, customer=customer)
    assert calls[0].params["line_items"] == [{"price": PRICES["starter"], "quantity": "1"}]
    assert calls[0].params["client_reference_id"] == str(alice.tenant.pk)
    assert (
        fake_stripe.calls("POST", "/v1/customers")[0].headers["Idempotency-Key"]
        == f"chom-customer-{alice.tenant.pk}"
    )


@pytest.mark.parametrize("who", ["bob", "victor", "staff"])
def test_it_keeps_other_roles_and_staff_tokens_out_of_checkout(who, request, fake_stripe):
    persona = request.getfixturevalue(who)
    for path in ("/api/v1/billing/checkout", "/api/v1/billing/portal"):
        response = persona.client().post(path, {"tier": "pro"}, format="json")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    assert fake_stripe.requests == []


def test_it_rejects_an_unknown_tier(alice, fake_stripe):
    response = alice.client().post("/api/v1/billing/checkout", {"tier": "platinum"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"tier"}


def test_it_sends_subscribers_to_the_portal_instead_of_a_second_checkout(alice, fake_stripe):
    subscribe(fake_stripe, alice.tenant, "pro")
    response = alice.client().post("/api/v1/billing/checkout", {"tier": "enterprise"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_subscribed"
    assert "/api/v1/billing/portal" in response.json()["error"]["message"]

    portal = alice.client().post("/api/v1/billing/portal")
    assert portal.status_code == 201
    assert portal.json()["url"].startswith("https://billing.stripe.test/p/")


def test_it_has_no_portal_before_a_customer_exists(alice, fake_stripe):
    response = alice.client().post("/api/v1/billing/portal")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_customer"


def test_it_answers_503_when_billing_is_off(alice, settings, db):
    settings.STRIPE_SECRET_KEY = ""
    response = alice.client().post("/api/v1/billing/checkout", {"tier": "pro"}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "billing_not_configured"


def test_it_answers_502_with_the_reason_when_stripe_is_down(alice, fake_stripe):
    fake_stripe.fail("POST", "/v1/customers", status=503, times=None)
    response = alice.client().post("/api/v1/billing/checkout", {"tier": "pro"}, format="json")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "stripe_unavailable"
    assert "HTTP 503" in response.json()["error"]["message"]


def test_it_answers_502_with_the_reason_when_the_customer_key_was_used_with_other_details(alice, fake_stripe):
    """A first checkout created the Stripe customer but its answer was lost; the tenant was renamed
    before the next try: Stripe refuses the key (24 h) instead of creating a second customer."""
    from billing import stripe_client

    stripe_client.customer_create(
        name="Old name",
        email="x@x.test",
        tenant_id=alice.tenant.pk,
        idempotency_key=f"chom-customer-{alice.tenant.pk}",
    )
    response = alice.client().post("/api/v1/billing/checkout", {"tier": "pro"}, format="json")
    assert response.status_code == 502, response.content
    error = response.json()["error"]
    assert error["code"] == "stripe_error" and "create a customer" in error["message"]
    assert "Idempotency-Key was already used with other parameters" in error["message"]
    assert len(fake_stripe.customers) == 1 and not fake_stripe.calls("POST", "/v1/checkout/sessions")


def test_it_shows_tier_status_period_and_upcoming_invoice(alice, victor, fake_stripe):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    body = victor.client().get("/api/v1/billing").json()
    assert (body["tier"], body["status"], body["over_limits"], body["warnings"]) == ("pro", "active", [], [])
    assert body["limits"]["max_sites"] == 25 and body["usage"]["sites"] == 0
    assert body["subscription"]["id"] == sub["id"] and body["subscription"]["status"] == "active"
    assert body["subscription"]["current_period_end"]
    assert body["upcoming_invoice"]["amount_due"] == 2900 and body["upcoming_invoice"]["currency"] == "usd"
    assert body["dunning"] is None


def test_it_still_answers_when_the_upcoming_invoice_is_unavailable(alice, fake_stripe):
    subscribe(fake_stripe, alice.tenant, "pro")
    fake_stripe.fail("POST", "/v1/invoices/create_preview", status=503, times=None)
    body = alice.client().get("/api/v1/billing").json()
    assert body["upcoming_invoice"] is None
    assert "upcoming invoice unavailable" in body["warnings"][0]


def test_it_shows_a_tenant_without_billing(charlie, db):
    body = charlie.client().get("/api/v1/billing").json()
    assert (body["tier"], body["subscription"], body["upcoming_invoice"]) == ("starter", None, None)


def test_it_lists_the_tenants_invoices_only(alice, charlie, fake_stripe):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    invoice = fake_stripe.invoice_create(subscription=sub["id"], status="paid")
    other = subscribe(fake_stripe, charlie.tenant, "starter")
    fake_stripe.invoice_create(subscription=other["id"], status="open")
    results = alice.client().get("/api/v1/billing/invoices").json()["results"]
    assert [(i["id"], i["status"], i["amount_paid"]) for i in results] == [(invoice["id"], "paid", 2900)]


def test_it_keeps_staff_tokens_off_the_tenant_billing_endpoints(staff, db):
    for path in ("/api/v1/billing", "/api/v1/billing/invoices"):
        assert staff.client().get(path).status_code == 403


def test_it_reports_what_is_over_the_limits_after_a_downgrade_and_deletes_nothing(alice, fake_stripe, client):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    make_sites(alice.tenant, 4)
    make_sites(alice.tenant, 1, site_type="laravel", start=10)
    make_sites(alice.tenant, 2, status="deleted", start=20)
    mail.outbox.clear()

    deliver(
        client,
        fake_stripe.event(
            "customer.subscription.updated",
            fake_stripe.subscription_update(sub["id"], price=PRICES["starter"]),
        ),
    )
    run_billing_operations()

    tenant = Tenant.objects.get(pk=alice.tenant.pk)
    assert tenant.tier == "starter"
    expected = [
        "sites: 5 in use, the starter tier allows 3",
        "site type laravel: 1 site(s), not included in the starter tier",
    ]
    assert tenant_over_limits(tenant) == expected
    assert alice.client().get("/api/v1/billing").json()["over_limits"] == expected
    assert Site.objects.filter(tenant=tenant).count() == 7
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@acme.test"]
    assert "sites: 5 in use" in mail.outbox[0].body

    # Upgrading again applies at once and clears the list.
    deliver(
        client,
        fake_stripe.event(
            "customer.subscription.updated",
            fake_stripe.subscription_update(sub["id"], price=PRICES["enterprise"]),
        ),
    )
    run_billing_operations()
    assert tenant_over_limits(Tenant.objects.get(pk=tenant.pk)) == []


def test_it_documents_the_billing_endpoints_in_a_valid_schema(db, tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = out.read_text()
    for path in (
        "/api/v1/billing:",
        "/api/v1/billing/checkout:",
        "/api/v1/billing/portal:",
        "/api/v1/billing/invoices:",
    ):
        assert path in schema
