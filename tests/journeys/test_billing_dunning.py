"""Journey: billing dunning, through the front door. A subscribed tenant's payment fails (a signed
`invoice.payment_failed` webhook; CHOM re-fetches the subscription from the Stripe fake), the grace
period runs out, the dunning job runs as beat runs it and the tenant's sites answer the suspension
page on the VPS itself; a signed `invoice.paid` brings them back, each served by its own site
(`X-Chom-Site`), with nothing deleted.

The grace period is moved through its setting, not waited for: the worker that applies the failed
payment runs with BILLING_GRACE_DAYS=0, so the grace ends at once and the next dunning run is due."""

import json

import pytest
import requests

from tests.billing.fake_stripe import sign
from tests.journeys.faults import Steps, beat_send, shared_vps, worker_with
from tests.journeys.support import Api, site_get, unique, vps_shell
from tests.support.processes import wait_for

pytestmark = pytest.mark.timeout(1500)  # the first journey of a session also waits for the stack

SUSPENSION_PAGE = "This site is temporarily suspended."
WAIT = 180.0  # a webhook's processing or the dunning's operations, on a busy 2-core machine


def test_it_suspends_an_unpaid_tenants_sites_on_the_vps_and_brings_them_back_when_paid(stack):
    steps = Steps("billing dunning")
    shared_vps(stack)  # CHOM places the sites on the shared fleet
    owner = stack.tenant("dunning")
    sites = [
        owner.act("/api/v1/sites", {"domain": f"{unique(name)}.test", "type": kind, "tls": "manual"})[0]
        for name, kind in (("unpaid-php", "php"), ("unpaid-static", "static"))
    ]
    served = {site["id"]: _serving(site) for site in sites}
    kept = {site["id"]: _kept(stack, owner, site) for site in sites}
    assert kept[sites[0]["id"]]["database"], "the PHP site has no database whose survival to check"
    assert all(k["trees"] and k["current_release"] for k in kept.values()), kept
    steps("two sites deployed and served")

    with worker_with(stack, BILLING_GRACE_DAYS="0"):
        steps("worker restarted with BILLING_GRACE_DAYS=0")
        checkout = owner.post("/api/v1/billing/checkout", {"tier": "pro"}, expect=201)
        session, subscription = stack.stripe.checkout_complete(checkout["url"].rsplit("/", 1)[1])
        _deliver(stack, "checkout.session.completed", session)
        _wait_billing(owner, lambda b: (b["subscription"] or {}).get("status") == "active", "subscribed")
        steps("subscribed through Checkout (signed webhook)")

        stack.stripe.subscription_update(subscription["id"], status="past_due")
        invoice = stack.stripe.invoice_create(subscription=subscription["id"], status="open")
        refetches = len(stack.stripe.calls("GET", f"/v1/subscriptions/{subscription['id']}"))
        _deliver(stack, "invoice.payment_failed", invoice)
        billing = _wait_billing(owner, lambda b: b["status"] == "past_due", "past due")
        assert billing["dunning"]["grace_until"] and not billing["dunning"]["suspended_at"], billing
        assert len(stack.stripe.calls("GET", f"/v1/subscriptions/{subscription['id']}")) > refetches, (
            "CHOM applied the failed payment without asking Stripe for the subscription"
        )
        for site in sites:  # grace: still served
            assert _serving(site) == served[site["id"]], f"{site['domain']} changed during the grace period"
        steps("payment failed: past due, sites still served (grace)")

        beat_send(stack, "billing.dunning_enforce")
        billing = _wait_billing(owner, lambda b: b["status"] == "suspended", "suspended by dunning")
        assert billing["dunning"]["suspended_at"], billing
        for site in sites:
            _wait_site_operations(owner, site, "site.suspend")
            detail = owner.get(f"/api/v1/sites/{site['id']}")
            assert detail["status"] == "suspended", detail
            page = site_get(site["vps"]["ip_address"], site["domain"])
            assert page.status_code == 503 and SUSPENSION_PAGE in page.text, (
                page.status_code,
                page.text[:300],
            )
            assert page.headers.get("X-Chom-Site") == f"site{site['id']}", page.headers
        steps("dunning run: the VPS answers the suspension page")

        stack.stripe.subscription_update(subscription["id"], status="active")
        paid = stack.stripe.invoice_create(subscription=subscription["id"], status="paid")
        _deliver(stack, "invoice.paid", paid)
        billing = _wait_billing(owner, lambda b: b["status"] == "active", "active again")
        assert billing["dunning"] is None, billing  # the dunning state is cleared
        for site in sites:
            _wait_site_operations(owner, site, "site.unsuspend")
            assert owner.get(f"/api/v1/sites/{site['id']}")["status"] == "active"
            assert _serving(site) == served[site["id"]], f"{site['domain']} serves something else"
            assert _kept(stack, owner, site) == kept[site["id"]], f"{site['domain']} lost something"
        steps("invoice paid: the same sites serve again, nothing deleted")
    assert {s["id"] for s in owner.get("/api/v1/sites")["results"]} == set(served), "a site went away"
    steps("worker back to the stack's settings")
    steps.report()


def _deliver(stack, event_type: str, obj: dict) -> None:
    """POST a Stripe event to the stack's webhook, signed as Stripe signs it."""
    payload = json.dumps(stack.stripe.event(event_type, obj))
    response = requests.post(
        f"{stack.url}/webhooks/stripe",
        data=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": sign(payload, stack.stripe_webhook_secret),
        },
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["duplicate"] is False, response.text


def _wait_billing(owner: Api, done, what: str) -> dict:
    last: dict = {}

    def check():
        nonlocal last
        last = owner.get("/api/v1/billing")
        return done(last)

    try:
        wait_for(check, timeout=WAIT, interval=1, what=what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; billing says {last}") from None
    return last


def _wait_site_operations(owner: Api, site: dict, kind: str) -> None:
    """Every KIND operation on SITE ends succeeded (there is at least one)."""
    ops = []

    def final():
        nonlocal ops
        listed = owner.get(f"/api/v1/operations?kind={kind}")["results"]
        ops = [op for op in listed if op["target_id"] == str(site["id"])]
        return ops and all(op["status"] in ("succeeded", "failed", "cancelled") for op in ops)

    try:
        wait_for(final, timeout=WAIT, interval=1, what=f"{kind} of {site['domain']}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {ops}") from None
    for op in ops:
        owner.wait_operation(op["id"])  # succeeded, or the failure with its log


def _serving(site: dict) -> tuple[int, str, str]:
    page = site_get(site["vps"]["ip_address"], site["domain"])
    assert page.status_code == 200, (site["domain"], page.status_code, page.text[:300])
    assert page.headers.get("X-Chom-Site") == f"site{site['id']}", page.headers
    return page.status_code, page.headers["X-Chom-Site"], page.text


def _kept(stack, owner: Api, site: dict) -> dict:
    """What must survive a suspension: the releases (rows and trees on the VPS) and the database."""
    detail = owner.get(f"/api/v1/sites/{site['id']}")
    vps = stack.staff().get(f"/api/v1/vps/{detail['vps']['id']}")
    user = f"site{site['id']}"
    trees = vps_shell(
        stack,
        vps,
        'cd "$1/releases" && find . -type f -exec sha256sum {} + | sort',
        f"/var/www/{user}",
    )
    databases = vps_shell(stack, vps, "mariadb -N -e 'SHOW DATABASES'").split()
    return {
        "current_release": detail["current_release"],
        "releases": sorted(r["name"] for r in detail["releases"]),
        "trees": trees,
        "database": user in databases,
    }
