"""billing/stripe_client.py against the local fake, through the real stripe library."""

import socket
import time

import pytest

from billing import stripe_client
from billing.stripe_client import StripeClientError
from tests.billing.conftest import PRICES


def test_it_retries_a_5xx_then_fails_with_an_error_a_human_can_act_on(fake_stripe):
    sub = fake_stripe.subscription_create(customer="cus_1", price=PRICES["pro"])
    fake_stripe.fail("GET", "/v1/subscriptions/", status=503, times=None)
    with pytest.raises(StripeClientError) as caught:
        stripe_client.subscription_retrieve(sub["id"])
    error = caught.value
    assert error.permanent is False and error.status == 503
    assert f"fetch subscription {sub['id']}" in error.message
    assert "HTTP 503 after 3 attempts" in error.message and "it will be retried" in error.message
    assert len(fake_stripe.calls("GET", f"/v1/subscriptions/{sub['id']}")) == 3  # 1 + 2 retries, bounded


def test_it_recovers_when_stripe_answers_after_a_5xx(fake_stripe):
    sub = fake_stripe.subscription_create(customer="cus_1", price=PRICES["pro"])
    fake_stripe.fail("GET", "/v1/subscriptions/", status=500, times=1)
    assert stripe_client.subscription_retrieve(sub["id"]).price_id == PRICES["pro"]
    assert [r.status for r in fake_stripe.calls("GET", f"/v1/subscriptions/{sub['id']}")] == [500, 200]


def test_it_reads_the_period_from_the_subscription_item(fake_stripe):
    sub = fake_stripe.subscription_create(customer="cus_1", price=PRICES["pro"], period_end=1_900_000_000)
    got = stripe_client.subscription_retrieve(sub["id"])
    assert (got.customer_id, got.status, got.current_period_end.timestamp()) == (
        "cus_1",
        "active",
        1_900_000_000,
    )


def test_it_treats_a_missing_subscription_as_permanent(fake_stripe):
    with pytest.raises(StripeClientError) as caught:
        stripe_client.subscription_retrieve("sub_nope")
    assert caught.value.permanent is True and caught.value.status == 404
    assert "No such subscription" in caught.value.message
    assert len(fake_stripe.calls("GET", "/v1/subscriptions/sub_nope")) == 1  # 4xx is not retried


def test_it_says_when_stripe_refuses_the_api_key(fake_stripe, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_wrong"
    with pytest.raises(StripeClientError) as caught:
        stripe_client.customer_create(name="x", email="x@x.test", tenant_id=1, idempotency_key="k1")
    assert caught.value.permanent is True and "check STRIPE_SECRET_KEY" in caught.value.message


def test_it_reports_an_unreachable_stripe_as_transient(fake_stripe, settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"
    with pytest.raises(StripeClientError) as caught:
        stripe_client.subscription_retrieve("sub_1")
    assert caught.value.permanent is False
    assert f"could not reach Stripe at http://127.0.0.1:{port}" in caught.value.message


def test_it_refuses_to_call_stripe_when_not_configured(settings):
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(StripeClientError, match="set STRIPE_SECRET_KEY"):
        stripe_client.subscription_retrieve("sub_1")


def test_it_resends_a_post_with_the_same_idempotency_key_and_stripe_creates_once(fake_stripe):
    fake_stripe.fail("POST", "/v1/billing/meter_events", status=502, times=1)
    stripe_client.meter_event_create(
        event_name="chom_usage_sites",
        customer_id="cus_1",
        value="3",
        identifier="chom-1-sites-20260101",
        timestamp=int(time.time()),
    )
    calls = fake_stripe.calls("POST", "/v1/billing/meter_events")
    assert [c.status for c in calls] == [502, 200]
    assert {c.headers["Idempotency-Key"] for c in calls} == {"chom-1-sites-20260101"}
    assert calls[1].params["payload"] == {"stripe_customer_id": "cus_1", "value": "3"}
    assert len(fake_stripe.meter_events) == 1


def test_it_retries_an_injected_5xx_because_stripe_says_it_may(fake_stripe):
    sub = fake_stripe.subscription_create(customer="cus_1", price=PRICES["pro"])
    fake_stripe.fail("GET", "/v1/subscriptions/", status=503, times=1)
    assert stripe_client.subscription_retrieve(sub["id"]).id == sub["id"]
    failed, answered = fake_stripe.calls("GET", f"/v1/subscriptions/{sub['id']}")
    assert (failed.status, failed.response_headers["Stripe-Should-Retry"]) == (503, "true")
    assert answered.status == 200


def test_it_does_not_retry_a_5xx_when_stripe_says_not_to_and_says_why(fake_stripe):
    fake_stripe.fail("POST", "/v1/customers", status=500, times=None, should_retry=False)
    with pytest.raises(StripeClientError) as caught:
        stripe_client.customer_create(name="acme", email="a@acme.test", tenant_id=7, idempotency_key="k")
    assert caught.value.permanent is True and caught.value.status == 500
    assert "said not to retry it (Stripe-Should-Retry: false)" in caught.value.message
    assert len(fake_stripe.calls("POST", "/v1/customers")) == 1  # the library obeyed the header


def test_it_reports_an_idempotency_key_reused_with_other_parameters_and_does_not_retry(fake_stripe):
    stripe_client.customer_create(name="acme", email="a@acme.test", tenant_id=7, idempotency_key="k")
    with pytest.raises(StripeClientError) as caught:
        stripe_client.customer_create(name="globex", email="a@acme.test", tenant_id=7, idempotency_key="k")
    error = caught.value
    assert error.permanent is True and error.status == 400
    assert "create a customer" in error.message and "already used with other parameters" in error.message
    assert "Try using a key other than 'k'" in error.message
    assert [c.status for c in fake_stripe.calls("POST", "/v1/customers")] == [200, 400]
    assert [c["name"] for c in fake_stripe.customers.values()] == ["acme"]


@pytest.mark.parametrize("offset", [-36 * 86400, 10 * 60], ids=["36-days-ago", "10-minutes-ahead"])
def test_it_reports_a_meter_event_outside_stripes_time_window_as_permanent(fake_stripe, offset):
    with pytest.raises(StripeClientError) as caught:
        stripe_client.meter_event_create(
            event_name="chom_usage_sites",
            customer_id="cus_1",
            value="3",
            identifier=f"chom-1-sites-{offset}",
            timestamp=int(time.time()) + offset,
        )
    assert caught.value.permanent is True and caught.value.status == 400
    assert "report usage chom-1-sites" in caught.value.message
    assert "within the past 35 calendar days or up to 5 minutes in the future" in caught.value.message
    assert len(fake_stripe.calls("POST", "/v1/billing/meter_events")) == 1 and not fake_stripe.meter_events


# --- the fake itself must be able to fail ---------------------------------------------------------


def test_the_fake_assertion_fails_when_a_request_was_not_made(fake_stripe):
    with pytest.raises(AssertionError, match="expected ≥1 POST /v1/customers"):
        fake_stripe.assert_called("POST", "/v1/customers")
    stripe_client.customer_create(name="acme", email="a@acme.test", tenant_id=7, idempotency_key="k")
    fake_stripe.assert_called("POST", "/v1/customers", name="acme")
    with pytest.raises(AssertionError):
        fake_stripe.assert_called("POST", "/v1/customers", name="globex")
    with pytest.raises(AssertionError):
        fake_stripe.assert_called("POST", "/v1/customers", times=2)


def test_the_fake_replays_a_repeated_idempotency_key(fake_stripe):
    first = stripe_client.customer_create(
        name="acme", email="a@acme.test", tenant_id=7, idempotency_key="same"
    )
    second = stripe_client.customer_create(
        name="acme", email="a@acme.test", tenant_id=7, idempotency_key="same"
    )
    other = stripe_client.customer_create(
        name="acme", email="a@acme.test", tenant_id=7, idempotency_key="other"
    )
    assert first == second != other
    assert len(fake_stripe.customers) == 2
    assert [c.replayed for c in fake_stripe.calls("POST", "/v1/customers")] == [False, True, False]


def test_the_fake_refuses_a_reused_idempotency_key_only_when_the_request_differs(fake_stripe):
    def meter(identifier, value, timestamp):
        stripe_client.meter_event_create(
            event_name="e", customer_id="cus_1", value=value, identifier=identifier, timestamp=timestamp
        )

    now = int(time.time())
    meter("m1", "1", now)
    meter("m1", "1", now)  # the same request again: replayed
    with pytest.raises(StripeClientError, match="already used with other parameters"):
        meter("m1", "2", now)
    stripe_client.customer_create(name="acme", email="a@acme.test", tenant_id=7, idempotency_key="c1")
    with pytest.raises(StripeClientError, match=r"same endpoint.*'POST /v1/customers' vs"):
        meter("c1", "1", now)
    calls = fake_stripe.calls("POST", "/v1/billing/meter_events")
    assert [(c.status, c.replayed) for c in calls] == [(200, False), (200, True), (400, False), (400, False)]
    assert calls[1].response_headers == {"Idempotent-Replayed": "true"}
    assert [e["payload"]["value"] for e in fake_stripe.meter_events] == ["1"]


def test_the_fake_accepts_meter_events_only_inside_the_window_on_its_own_clock(fake_stripe):
    now = int(time.time())
    for offset in (-35 * 86400 + 60, 0, 4 * 60):
        stripe_client.meter_event_create(
            event_name="e", customer_id="cus_1", value="1", identifier=f"in{offset}", timestamp=now + offset
        )
    assert len(fake_stripe.meter_events) == 3
    fake_stripe.clock = lambda: now + 86400  # Stripe a day later: "now" is 24 hours in its past
    stripe_client.meter_event_create(
        event_name="e", customer_id="cus_1", value="1", identifier="late", timestamp=now
    )
    with pytest.raises(StripeClientError, match="35 calendar days"):
        stripe_client.meter_event_create(
            event_name="e", customer_id="cus_1", value="1", identifier="old", timestamp=now - 35 * 86400
        )
    # A refused request leaves no result behind: the same key with a valid timestamp goes through.
    stripe_client.meter_event_create(
        event_name="e", customer_id="cus_1", value="1", identifier="old", timestamp=now
    )
    assert [e["identifier"] for e in fake_stripe.meter_events][-2:] == ["late", "old"]
