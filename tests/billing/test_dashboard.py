import pytest
from django.contrib.auth import get_user_model

from tests.billing.conftest import deliver, make_sites, run_billing_operations, subscribe


@pytest.fixture
def staff_client(client, db):
    user = get_user_model().objects.create_user("admin", password="pw-for-tests-only", is_staff=True)
    client.force_login(user)
    return client


def test_it_lists_tenants_with_tier_status_usage_and_last_events(alice, charlie, fake_stripe, staff_client):
    sub = subscribe(fake_stripe, alice.tenant, "pro")
    make_sites(charlie.tenant, 4)
    deliver(
        staff_client, fake_stripe.event("customer.subscription.updated", fake_stripe.subscriptions[sub["id"]])
    )
    run_billing_operations()

    response = staff_client.get("/billing/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "acme" in html and "globex" in html
    assert sub["id"] in html and "customer.subscription.updated" in html
    assert "4 (3)" in html and "sites: 4 in use, the starter tier allows 3" in html


def test_it_keeps_non_staff_out_of_the_billing_page(client, db):
    user = get_user_model().objects.create_user("customer", password="pw-for-tests-only")
    client.force_login(user)
    assert client.get("/billing/").status_code == 302
