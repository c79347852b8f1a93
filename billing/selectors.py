"""Reads of billing. Tier limits come from chom.tiers; usage from chom.selectors.USAGE_COUNTERS."""

from decimal import Decimal

from django.conf import settings
from django.db.models import QuerySet

from billing import stripe_client
from billing.models import BillingAccount, StripeEvent
from chom.models import Tenant
from chom.selectors import USAGE_COUNTERS, tenant_usage
from chom.tiers import TIERS
from sites.selectors import tenant_over_limits, tenant_site_count


def price_for_tier(tier: str) -> str:
    return {
        "starter": settings.STRIPE_PRICE_STARTER,
        "pro": settings.STRIPE_PRICE_PRO,
        "enterprise": settings.STRIPE_PRICE_ENTERPRISE,
    }.get(tier, "")


def tier_for_price(price_id: str) -> str | None:
    return next((tier for tier in TIERS if price_id and price_for_tier(tier) == price_id), None)


def metered_usage(tenant: Tenant) -> dict[str, Decimal]:
    """The metrics billed by usage that some app can count (see BILLING_METERED_METRICS)."""
    return {
        metric: Decimal(str(USAGE_COUNTERS[metric](tenant)))
        for metric in settings.BILLING_METERED_METRICS
        if metric in USAGE_COUNTERS
    }


def unmetered_metrics() -> list[str]:
    return [m for m in settings.BILLING_METERED_METRICS if m not in USAGE_COUNTERS]


def billing_account_for(tenant: Tenant) -> BillingAccount | None:
    return BillingAccount.objects.filter(tenant=tenant).first()


def accounts_to_meter() -> QuerySet[BillingAccount]:
    return BillingAccount.objects.filter(
        stripe_customer_id__isnull=False, subscription_status__in=BillingAccount.LIVE_STATUSES
    ).select_related("tenant")


def accounts_past_grace(*, now) -> QuerySet[BillingAccount]:
    return BillingAccount.objects.filter(
        tenant__status=Tenant.Status.PAST_DUE, grace_until__lte=now
    ).select_related("tenant")


def stripe_events_recent(*, tenant: Tenant | None = None, limit: int = 20) -> QuerySet[StripeEvent]:
    qs = StripeEvent.objects.all() if tenant is None else StripeEvent.objects.filter(tenant=tenant)
    return qs.select_related("tenant").defer("payload")[:limit]


def billing_overview(*, staff: bool) -> list[dict]:
    """One row per tenant for the staff dashboard."""
    if not staff:
        return []
    accounts = {a.tenant_id: a for a in BillingAccount.objects.all()}
    last_events: dict[int, StripeEvent] = {}
    for event in StripeEvent.objects.exclude(tenant=None).defer("payload").order_by("-received_at")[:500]:
        last_events.setdefault(event.tenant_id, event)
    rows = []
    for tenant in Tenant.objects.order_by("slug"):
        rows.append(
            {
                "tenant": tenant,
                "account": accounts.get(tenant.id),
                "sites": tenant_site_count(tenant),
                "max_sites": tenant.limits.max_sites,
                "over_limits": tenant_over_limits(tenant),
                "last_event": last_events.get(tenant.id),
            }
        )
    return rows


def billing_status(*, tenant: Tenant) -> dict:
    """What GET /api/v1/billing answers: tier, limits, usage, subscription and dunning state, and
    the upcoming invoice from Stripe (a Stripe outage becomes a warning, never an error)."""
    account = billing_account_for(tenant)
    body = {
        "tier": tenant.tier,
        "status": tenant.status,
        "limits": tenant.limits.as_dict(),
        "usage": tenant_usage(tenant=tenant),
        "over_limits": tenant_over_limits(tenant),
        "subscription": account if account and account.stripe_subscription_id else None,
        "dunning": account if account and account.past_due_since else None,
        "upcoming_invoice": None,
        "warnings": [],
    }
    if account and account.has_live_subscription:
        try:
            body["upcoming_invoice"] = stripe_client.invoice_preview(
                customer_id=account.stripe_customer_id, subscription_id=account.stripe_subscription_id
            )
        except stripe_client.StripeClientError as exc:
            body["warnings"].append(f"upcoming invoice unavailable: {exc.message}")
    return body
