"""Writes of billing: checkout, webhook events, dunning, usage metering.

Stripe is the source of truth. A webhook only tells us *that* something changed: processing
re-fetches the subscription from Stripe and makes the tenant match it, so events applied twice or
out of order end in the same state. Stripe I/O never happens inside a database transaction.
"""

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing import selectors, stripe_client
from billing.models import BillingAccount, StripeEvent, UsageReport
from billing.stripe_client import StripeClientError, Subscription
from chom.errors import ApplicationError
from chom.models import Membership, Operation, Tenant
from chom.operations import OperationContext, OperationError, operation_create, register
from chom.services import audit_record
from chom.tiers import STARTER, TIERS
from sites.selectors import tenant_over_limits

logger = logging.getLogger(__name__)

PROCESS_EVENT_KIND = "billing.process_event"
# Sites suspended by dunning carry this reason; only those are unsuspended when the tenant pays.
SUSPEND_REASON = "billing_unpaid"
HANDLED_EVENT_TYPES = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
    }
)
_ENDED_STATUSES = ("canceled", "incomplete_expired")
_TIER_ORDER = list(TIERS)


def _tenant_target(tenant: Tenant) -> str:
    return f"tenant:{tenant.slug}"


def _notify_owners(tenant: Tenant, subject: str, body: str) -> int:
    """Email the tenant's owners. A mail failure is logged, never undoes a billing transition."""
    emails = list(
        Membership.objects.filter(tenant=tenant, role=Membership.Role.OWNER)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    if not emails:
        logger.warning("billing: tenant %s has no owner email to tell: %s", tenant.slug, subject)
        return 0
    try:
        return send_mail(f"[CHOM] {subject}", body, None, emails)
    except Exception:
        logger.exception("billing: could not email %s about %r", emails, subject)
        return 0


# --- Checkout and portal ---------------------------------------------------------------------


def _require_configured() -> None:
    if not stripe_client.is_configured():
        raise ApplicationError(
            503, "billing_not_configured", "Billing is not enabled on this CHOM (no Stripe key)."
        )


def billing_account_get_or_create(*, tenant: Tenant) -> BillingAccount:
    account, _ = BillingAccount.objects.get_or_create(tenant=tenant)
    return account


def _ensure_customer(account: BillingAccount) -> str:
    if account.stripe_customer_id:
        return account.stripe_customer_id
    tenant = account.tenant
    owner = (
        Membership.objects.filter(tenant=tenant, role=Membership.Role.OWNER).select_related("user").first()
    )
    customer_id = stripe_client.customer_create(
        name=tenant.name,
        email=owner.user.email if owner else "",
        tenant_id=tenant.pk,
        # Two racing first checkouts get the same Stripe customer back.
        idempotency_key=f"chom-customer-{tenant.pk}",
    )
    BillingAccount.objects.filter(pk=account.pk, stripe_customer_id__isnull=True).update(
        stripe_customer_id=customer_id
    )
    account.refresh_from_db()
    return account.stripe_customer_id


def billing_checkout_create(*, tenant: Tenant, tier: str, actor=None, source_ip=None) -> str:
    """A Stripe Checkout URL where the tenant subscribes to `tier`."""
    _require_configured()
    account = billing_account_get_or_create(tenant=tenant)
    if account.has_live_subscription:
        raise ApplicationError(
            409,
            "already_subscribed",
            f"Tenant {tenant.slug} already has subscription {account.stripe_subscription_id} "
            f"({tenant.tier}); change the plan in the Customer Portal: POST /api/v1/billing/portal.",
        )
    customer_id = _ensure_customer(account)
    url = stripe_client.checkout_session_create(
        customer_id=customer_id,
        price_id=selectors.price_for_tier(tier),
        tenant_id=tenant.pk,
        success_url=f"{settings.BILLING_RETURN_URL}?checkout=success",
        cancel_url=f"{settings.BILLING_RETURN_URL}?checkout=cancelled",
    )
    audit_record(
        action="billing.checkout_started",
        actor=actor,
        tenant=tenant,
        target=_tenant_target(tenant),
        source_ip=source_ip,
        data={"tier": tier},
    )
    return url


def billing_portal_create(*, tenant: Tenant, actor=None, source_ip=None) -> str:
    _require_configured()
    account = selectors.billing_account_for(tenant)
    if account is None or not account.stripe_customer_id:
        raise ApplicationError(
            409,
            "no_customer",
            f"Tenant {tenant.slug} has no Stripe customer yet; "
            "subscribe first: POST /api/v1/billing/checkout.",
        )
    url = stripe_client.portal_session_create(
        customer_id=account.stripe_customer_id, return_url=settings.BILLING_RETURN_URL
    )
    audit_record(
        action="billing.portal_opened",
        actor=actor,
        tenant=tenant,
        target=_tenant_target(tenant),
        source_ip=source_ip,
    )
    return url


# --- Webhook events --------------------------------------------------------------------------


def _id_of(value) -> str:
    if isinstance(value, dict):
        return value.get("id") or ""
    return value or ""


def _account_for(obj: dict) -> BillingAccount | None:
    customer_id = _id_of(obj.get("customer"))
    if customer_id:
        account = (
            BillingAccount.objects.filter(stripe_customer_id=customer_id).select_related("tenant").first()
        )
        if account:
            return account
    tenant_id = obj.get("client_reference_id") or (obj.get("metadata") or {}).get("chom_tenant_id") or ""
    if str(tenant_id).isdigit():
        return BillingAccount.objects.filter(tenant_id=int(tenant_id)).select_related("tenant").first()
    return None


def _subscription_of(event_type: str, obj: dict) -> str:
    if event_type.startswith("customer.subscription."):
        return obj.get("id") or ""
    if event_type.startswith("invoice."):
        # API 2025-03-31 moved it under parent.subscription_details; older versions have it on top.
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        return _id_of(obj.get("subscription")) or _id_of(details.get("subscription"))
    return _id_of(obj.get("subscription"))


def stripe_event_record(*, payload: dict) -> tuple[StripeEvent, bool]:
    """Store a verified event by its id and queue its processing, once. (event, created)."""
    obj = payload.get("data", {}).get("object", {})
    account = _account_for(obj)
    created_ts = payload.get("created")
    with transaction.atomic():
        event, created = StripeEvent.objects.get_or_create(
            event_id=payload["id"],
            defaults={
                "type": payload.get("type", ""),
                "payload": payload,
                "tenant": account.tenant if account else None,
                "stripe_created_at": datetime.fromtimestamp(created_ts, tz=UTC) if created_ts else None,
            },
        )
        if not created:
            StripeEvent.objects.filter(pk=event.pk).update(deliveries=F("deliveries") + 1)
            return event, False
        operation_create(
            kind=PROCESS_EVENT_KIND,
            tenant=event.tenant,
            # One tenant's events are applied one at a time (one running mutation per target).
            target=account,
            params={"event_id": event.event_id, "type": event.type},
            idempotency_key=f"stripe-event:{event.event_id}",
        )
    return event, True


def _event_finish(event: StripeEvent, status: str, outcome: str, tenant: Tenant | None = None) -> dict:
    StripeEvent.objects.filter(pk=event.pk).update(
        status=status, outcome=outcome[:4000], processed_at=timezone.now(), tenant=tenant or event.tenant
    )
    return {"event": event.event_id, "status": status, "outcome": outcome}


def stripe_event_process(*, event_id: str, now: datetime | None = None) -> dict:
    """Apply one stored event by making the tenant match Stripe. Raises StripeClientError."""
    event = StripeEvent.objects.get(event_id=event_id)
    if event.status in (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED):
        return {"event": event_id, "status": event.status, "outcome": "already applied"}
    if event.type not in HANDLED_EVENT_TYPES:
        return _event_finish(event, StripeEvent.Status.IGNORED, f"{event.type} is not an event CHOM acts on")
    obj = event.payload.get("data", {}).get("object", {})
    account = _account_for(obj)
    if account is None:
        customer = _id_of(obj.get("customer")) or "?"
        return _event_finish(
            event, StripeEvent.Status.IGNORED, f"no CHOM tenant for Stripe customer {customer}"
        )
    if event.type == "checkout.session.completed" and not account.stripe_customer_id:
        BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=_id_of(obj.get("customer")))
    subscription_id = _subscription_of(event.type, obj)
    if not subscription_id:
        return _event_finish(event, StripeEvent.Status.IGNORED, "no subscription involved", account.tenant)
    subscription = stripe_client.subscription_retrieve(subscription_id)
    outcome = billing_account_sync(account=account, subscription=subscription, now=now)
    return _event_finish(event, StripeEvent.Status.PROCESSED, outcome, account.tenant)


def stripe_event_retry(*, event: StripeEvent, actor=None) -> Operation:
    """Queue a failed event again (admin action). Processing is state-based, so this is safe."""
    attempt = Operation.objects.filter(idempotency_key__startswith=f"stripe-event:{event.event_id}").count()
    StripeEvent.objects.filter(pk=event.pk, status=StripeEvent.Status.FAILED).update(
        status=StripeEvent.Status.RECEIVED
    )
    with transaction.atomic():
        return operation_create(
            kind=PROCESS_EVENT_KIND,
            tenant=event.tenant,
            params={"event_id": event.event_id, "type": event.type},
            actor=actor,
            idempotency_key=f"stripe-event:{event.event_id}:retry-{attempt}",
        )


def _process_failed(ctx: OperationContext, reason: str) -> None:
    StripeEvent.objects.filter(event_id=ctx.params["event_id"]).exclude(
        status=StripeEvent.Status.PROCESSED
    ).update(status=StripeEvent.Status.FAILED, outcome=reason[:4000])


@register(PROCESS_EVENT_KIND, soft_time_limit=120, time_limit=150, max_attempts=5, on_failure=_process_failed)
def _process_event_operation(ctx: OperationContext) -> dict:
    ctx.step(f"apply {ctx.params.get('type', 'event')} {ctx.params['event_id']}")
    try:
        result = stripe_event_process(event_id=ctx.params["event_id"])
    except StripeClientError as exc:
        raise OperationError(exc.message, transient=not exc.permanent)
    ctx.log(result["outcome"])
    return result


# --- Making the tenant match its subscription --------------------------------------------------


def billing_account_sync(
    *, account: BillingAccount, subscription: Subscription, now: datetime | None = None
) -> str:
    """Make the account, tier and dunning state match the subscription Stripe reports."""
    now = now or timezone.now()
    account.refresh_from_db()
    current = account.stripe_subscription_id
    if current and subscription.id != current and account.has_live_subscription:
        if subscription.status not in BillingAccount.LIVE_STATUSES:
            return f"subscription {subscription.id} is {subscription.status}; the tenant's is {current}"
    tier = selectors.tier_for_price(subscription.price_id)
    live = subscription.status in BillingAccount.LIVE_STATUSES
    if live and tier is None:
        raise StripeClientError(
            f"subscription {subscription.id} uses price {subscription.price_id!r}, which is not one of "
            "STRIPE_PRICE_STARTER/PRO/ENTERPRISE; fix the settings or the subscription in Stripe",
            permanent=True,
        )
    BillingAccount.objects.filter(pk=account.pk).update(
        stripe_subscription_id=subscription.id,
        stripe_price_id=subscription.price_id,
        subscription_status=subscription.status,
        current_period_end=subscription.current_period_end,
        cancel_at_period_end=subscription.cancel_at_period_end,
        synced_at=now,
    )
    account.refresh_from_db()
    outcomes = [f"subscription {subscription.id} is {subscription.status}"]
    if live:
        outcomes.append(_tier_apply(account=account, tier=tier))
    elif subscription.status in _ENDED_STATUSES:
        outcomes.append(_tier_apply(account=account, tier=STARTER, ended=True))
    if subscription.status in BillingAccount.PAID_STATUSES:
        outcomes.append(_tenant_restore(account=account, now=now))
    elif subscription.status in BillingAccount.UNPAID_STATUSES:
        outcomes.append(_tenant_grace_start(account=account, now=now))
    return "; ".join(o for o in outcomes if o)


def _tier_apply(*, account: BillingAccount, tier: str, ended: bool = False) -> str:
    tenant = Tenant.objects.get(pk=account.tenant_id)
    if tenant.tier == tier:
        return ""
    previous = tenant.tier
    Tenant.objects.filter(pk=tenant.pk).update(tier=tier)
    tenant.tier = tier
    direction = "upgrade" if _TIER_ORDER.index(tier) > _TIER_ORDER.index(previous) else "downgrade"
    over = tenant_over_limits(tenant)
    audit_record(
        action="billing.subscription_ended" if ended else "billing.tier_changed",
        tenant=tenant,
        target=_tenant_target(tenant),
        data={"from": previous, "to": tier, "direction": direction, "over_limits": over},
    )
    if over:
        _notify_owners(
            tenant,
            f"{tenant.slug} is now on the {tier} tier and over its limits",
            f"Your plan changed from {previous} to {tier}. Nothing was deleted, but new sites are blocked "
            "until usage is within the limits:\n\n- " + "\n- ".join(over),
        )
    return f"tier {previous} → {tier} ({direction})" + (f", over limits: {'; '.join(over)}" if over else "")


def _tenant_grace_start(*, account: BillingAccount, now: datetime) -> str:
    grace_until = now + timedelta(days=settings.BILLING_GRACE_DAYS)
    with transaction.atomic():
        changed = Tenant.objects.filter(pk=account.tenant_id, status=Tenant.Status.ACTIVE).update(
            status=Tenant.Status.PAST_DUE
        )
        if not changed:
            return ""
        BillingAccount.objects.filter(pk=account.pk).update(past_due_since=now, grace_until=grace_until)
        tenant = Tenant.objects.get(pk=account.tenant_id)
        audit_record(
            action="billing.past_due",
            tenant=tenant,
            target=_tenant_target(tenant),
            data={"grace_until": grace_until.isoformat(), "subscription": account.stripe_subscription_id},
        )
    _notify_owners(
        tenant,
        f"payment failed for {tenant.slug}",
        f"We could not collect the payment for your CHOM subscription. Please update your payment method "
        f"before {grace_until:%Y-%m-%d %H:%M} UTC; after that your sites will be suspended until it is paid.",
    )
    return f"past due, grace until {grace_until.isoformat()}"


def _tenant_restore(*, account: BillingAccount, now: datetime) -> str:
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=account.tenant_id)
        account = BillingAccount.objects.select_for_update().get(pk=account.pk)
        # A tenant staff suspended for other reasons is not billing's to restore.
        if tenant.status == Tenant.Status.ACTIVE or not (account.past_due_since or account.suspended_at):
            return ""
        was_suspended = tenant.status == Tenant.Status.SUSPENDED
        tenant.status = Tenant.Status.ACTIVE
        tenant.save(update_fields=["status"])
        BillingAccount.objects.filter(pk=account.pk).update(
            past_due_since=None, grace_until=None, suspended_at=None
        )
        ops = []
        if was_suspended:
            from sites.services import tenant_sites_unsuspend

            ops = tenant_sites_unsuspend(tenant=tenant, reason=SUSPEND_REASON)
        audit_record(
            action="billing.restored",
            tenant=tenant,
            target=_tenant_target(tenant),
            data={"was_suspended": was_suspended, "operations": [str(op.id) for op in ops]},
        )
    _notify_owners(
        tenant,
        f"payment received for {tenant.slug}",
        "Thank you, your CHOM subscription is paid."
        + (f" Your sites are being restored ({len(ops)} site(s))." if was_suspended else ""),
    )
    return "paid: tenant active" + (f", {len(ops)} site(s) being unsuspended" if was_suspended else "")


def _tenant_suspend(*, account: BillingAccount, now: datetime) -> str:
    from sites.services import tenant_sites_suspend

    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=account.tenant_id)
        if tenant.status != Tenant.Status.PAST_DUE:
            return f"not suspended: tenant is {tenant.status}"
        tenant.status = Tenant.Status.SUSPENDED
        tenant.save(update_fields=["status"])
        BillingAccount.objects.filter(pk=account.pk).update(suspended_at=now)
        ops = tenant_sites_suspend(tenant=tenant, reason=SUSPEND_REASON)
        audit_record(
            action="billing.suspended",
            tenant=tenant,
            target=_tenant_target(tenant),
            data={
                "past_due_since": account.past_due_since.isoformat() if account.past_due_since else None,
                "operations": [str(op.id) for op in ops],
            },
        )
    _notify_owners(
        tenant,
        f"sites suspended for {tenant.slug}",
        f"Your CHOM subscription is still unpaid after the {settings.BILLING_GRACE_DAYS}-day grace period, "
        f"so {len(ops)} site(s) were suspended. Nothing was deleted: "
        "pay the open invoice and they come back.",
    )
    return f"suspended, {len(ops)} site(s) being suspended"


def tenant_dunning_enforce(*, now: datetime | None = None) -> dict[str, str]:
    """Suspend tenants still unpaid after their grace period (beat job). Slug → what happened."""
    now = now or timezone.now()
    results = {}
    for account in selectors.accounts_past_grace(now=now):
        slug = account.tenant.slug
        if account.stripe_subscription_id:
            # A lost invoice.paid webhook must not cost a paying customer their sites: ask Stripe.
            try:
                subscription = stripe_client.subscription_retrieve(account.stripe_subscription_id)
            except StripeClientError as exc:
                results[slug] = f"not suspended, Stripe unavailable: {exc.message}"
                continue
            billing_account_sync(account=account, subscription=subscription, now=now)
            if Tenant.objects.get(pk=account.tenant_id).status != Tenant.Status.PAST_DUE:
                results[slug] = "paid meanwhile: restored"
                continue
        try:
            results[slug] = _tenant_suspend(account=account, now=now)
        except Exception as exc:  # one tenant's failure must not stop the others' dunning
            logger.exception("billing: suspending %s failed", slug)
            results[slug] = f"suspension failed: {exc!r}"
    return results


# --- Usage metering --------------------------------------------------------------------------


def _meter_value(quantity: Decimal) -> str:
    return format(quantity.normalize(), "f")


def usage_report_send(*, report: UsageReport) -> bool:
    """Send one pending report. Its identifier doubles as the Idempotency-Key: resending is safe."""
    UsageReport.objects.filter(pk=report.pk).update(attempts=F("attempts") + 1)
    try:
        stripe_client.meter_event_create(
            event_name=f"{settings.STRIPE_METER_EVENT_NAME}_{report.metric}",
            customer_id=report.stripe_customer_id,
            value=_meter_value(report.quantity),
            identifier=report.identifier,
            timestamp=int(report.created_at.timestamp()),
        )
    except StripeClientError as exc:
        UsageReport.objects.filter(pk=report.pk).update(error=exc.message[:4000])
        return False
    UsageReport.objects.filter(pk=report.pk, status=UsageReport.Status.PENDING).update(
        status=UsageReport.Status.SENT, sent_at=timezone.now(), error=""
    )
    return True


def usage_report_daily(*, now: datetime | None = None) -> dict:
    """Report each subscribed tenant's usage for today, once per tenant, day and metric."""
    now = now or timezone.now()
    if not stripe_client.is_configured() or not settings.STRIPE_METER_EVENT_NAME:
        return {"skipped": "metering is off: STRIPE_SECRET_KEY or STRIPE_METER_EVENT_NAME is empty"}
    day = now.date()
    counts = {"sent": 0, "already_sent": 0, "failed": 0, "unmetered": selectors.unmetered_metrics()}
    for account in selectors.accounts_to_meter():
        for metric, quantity in selectors.metered_usage(account.tenant).items():
            # The first run of the day fixes the quantity: a rerun resends exactly the same request.
            report, _ = UsageReport.objects.get_or_create(
                tenant=account.tenant,
                day=day,
                metric=metric,
                defaults={
                    "quantity": quantity,
                    "identifier": f"chom-{account.tenant_id}-{metric}-{day:%Y%m%d}",
                    "stripe_customer_id": account.stripe_customer_id,
                    "created_at": now,
                },
            )
            if report.status == UsageReport.Status.SENT:
                counts["already_sent"] += 1
            elif usage_report_send(report=report):
                counts["sent"] += 1
            else:
                counts["failed"] += 1
    if counts["unmetered"]:
        logger.info("billing: no usage counter registered for %s; not metered", counts["unmetered"])
    return counts
