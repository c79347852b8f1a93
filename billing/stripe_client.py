"""The only module that talks to Stripe: a few typed calls on the real `stripe` library.

Every call has a timeout; the library retries connection errors, 409 and 5xx answers with
exponential backoff (STRIPE_MAX_NETWORK_RETRIES times) unless Stripe's `Stripe-Should-Retry`
header says otherwise, and sends an Idempotency-Key on every POST, so a retried create never
creates twice. Whatever goes wrong surfaces as `StripeClientError`, whose `permanent` flag says
whether trying the same call later can help (Stripe's own word on it, when it gives one).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import stripe
from django.conf import settings

from chom.errors import ApplicationError, ExternalServiceError

logger = logging.getLogger(__name__)


class StripeClientError(ExternalServiceError):
    """Stripe failed; `permanent` when retrying the same call cannot help."""

    service = "stripe"

    def as_application_error(self) -> ApplicationError:
        """Stripe is an upstream: its refusals and its outages are both a 502 to our caller."""
        return ApplicationError(502, "stripe_error" if self.permanent else "stripe_unavailable", self.message)


@dataclass(frozen=True)
class Subscription:
    id: str
    customer_id: str
    status: str
    price_id: str
    current_period_end: datetime | None
    cancel_at_period_end: bool


@dataclass(frozen=True)
class Invoice:
    id: str
    number: str
    status: str
    amount_due: int
    amount_paid: int
    currency: str
    created: datetime | None
    period_end: datetime | None
    hosted_invoice_url: str
    invoice_pdf: str


@dataclass(frozen=True)
class UpcomingInvoice:
    amount_due: int
    currency: str
    next_payment_attempt: datetime | None
    period_end: datetime | None


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@functools.lru_cache(maxsize=4)
def _build_client(api_key: str, api_base: str, retries: int, timeout: float) -> stripe.StripeClient:
    addresses = {"api": api_base, "meter_events": api_base} if api_base else None
    return stripe.StripeClient(
        api_key,
        base_addresses=addresses,
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def _client() -> stripe.StripeClient:
    if not is_configured():
        raise StripeClientError("Stripe is not configured: set STRIPE_SECRET_KEY", permanent=True)
    return _build_client(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        settings.STRIPE_MAX_NETWORK_RETRIES,
        settings.STRIPE_TIMEOUT,
    )


def _where() -> str:
    return settings.STRIPE_API_BASE or "api.stripe.com"


def _should_retry(exc: stripe.StripeError) -> bool | None:
    """Stripe's `Stripe-Should-Retry` answer header: True, False, or None when it did not say."""
    said = {name.lower(): value for name, value in (exc.headers or {}).items()}.get("stripe-should-retry")
    return {"true": True, "false": False}.get(said or "")


def _translate(exc: stripe.StripeError, action: str) -> StripeClientError:
    status = exc.http_status
    detail = exc.user_message or str(exc) or exc.__class__.__name__
    tries = settings.STRIPE_MAX_NETWORK_RETRIES + 1
    should_retry = _should_retry(exc)
    if isinstance(exc, stripe.APIConnectionError):
        return StripeClientError(
            f"could not reach Stripe at {_where()} to {action} after {tries} attempts ({detail}); "
            "check the network and STRIPE_API_BASE, it will be retried",
            permanent=False,
        )
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return StripeClientError(
            f"Stripe refused our API key while trying to {action} (HTTP {status}): {detail}; "
            "check STRIPE_SECRET_KEY",
            permanent=True,
            status=status,
        )
    if isinstance(exc, stripe.IdempotencyError):
        return StripeClientError(
            f"Stripe refused to {action} (HTTP {status}): its Idempotency-Key was already used with other "
            f"parameters, so this is not a retry of the same request: {detail}",
            permanent=True,
            status=status,
        )
    if should_retry is False:
        return StripeClientError(
            f"Stripe failed to {action} (HTTP {status}) and said not to retry it (Stripe-Should-Retry: "
            f"false): {detail}",
            permanent=True,
            status=status,
        )
    if should_retry or isinstance(exc, stripe.RateLimitError) or (status is not None and status >= 500):
        return StripeClientError(
            f"Stripe failed to {action}: HTTP {status} after {tries} attempts ({detail}); "
            "Stripe is having trouble, it will be retried",
            permanent=False,
            status=status,
        )
    return StripeClientError(
        f"Stripe rejected the request to {action} (HTTP {status}): {detail}", permanent=True, status=status
    )


def _call(action: str, fn, *args, **kwargs) -> dict:
    """Run one library call; answer the plain JSON of the result."""
    try:
        return fn(*args, **kwargs).to_dict()
    except stripe.StripeError as exc:
        error = _translate(exc, action)
        logger.warning("stripe: %s", error.message)
        raise error from exc


def _ts(value) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def customer_create(*, name: str, email: str, tenant_id: int, idempotency_key: str) -> str:
    customer = _call(
        "create a customer",
        _client().v1.customers.create,
        {"name": name, "email": email, "metadata": {"chom_tenant_id": str(tenant_id)}},
        {"idempotency_key": idempotency_key},
    )
    return customer["id"]


def checkout_session_create(
    *, customer_id: str, price_id: str, tenant_id: int, success_url: str, cancel_url: str
) -> str:
    session = _call(
        "create a Checkout Session",
        _client().v1.checkout.sessions.create,
        {
            "mode": "subscription",
            "customer": customer_id,
            "client_reference_id": str(tenant_id),
            "line_items": [{"price": price_id, "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": {"chom_tenant_id": str(tenant_id)},
            "subscription_data": {"metadata": {"chom_tenant_id": str(tenant_id)}},
        },
    )
    return session["url"]


def portal_session_create(*, customer_id: str, return_url: str) -> str:
    session = _call(
        "create a Customer Portal session",
        _client().v1.billing_portal.sessions.create,
        {"customer": customer_id, "return_url": return_url},
    )
    return session["url"]


def _period_end(sub) -> datetime | None:
    # Since API 2025-03-31 the billing period lives on the subscription items.
    items = (sub.get("items") or {}).get("data") or []
    if items and items[0].get("current_period_end"):
        return _ts(items[0]["current_period_end"])
    return _ts(sub.get("current_period_end"))


def subscription_retrieve(subscription_id: str) -> Subscription:
    sub = _call(f"fetch subscription {subscription_id}", _client().v1.subscriptions.retrieve, subscription_id)
    items = (sub.get("items") or {}).get("data") or []
    price = items[0].get("price") if items else None
    customer = sub.get("customer")
    return Subscription(
        id=sub["id"],
        customer_id=customer if isinstance(customer, str) else customer["id"],
        status=sub.get("status") or "",
        price_id=(price.get("id") if price else "") or "",
        current_period_end=_period_end(sub),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
    )


def invoices_list(*, customer_id: str, limit: int = 24) -> list[Invoice]:
    page = _call("list invoices", _client().v1.invoices.list, {"customer": customer_id, "limit": limit})
    return [
        Invoice(
            id=inv["id"],
            number=inv.get("number") or "",
            status=inv.get("status") or "",
            amount_due=inv.get("amount_due") or 0,
            amount_paid=inv.get("amount_paid") or 0,
            currency=inv.get("currency") or "",
            created=_ts(inv.get("created")),
            period_end=_ts(inv.get("period_end")),
            hosted_invoice_url=inv.get("hosted_invoice_url") or "",
            invoice_pdf=inv.get("invoice_pdf") or "",
        )
        for inv in page.get("data", [])
    ]


def invoice_preview(*, customer_id: str, subscription_id: str) -> UpcomingInvoice:
    inv = _call(
        "preview the upcoming invoice",
        _client().v1.invoices.create_preview,
        {"customer": customer_id, "subscription": subscription_id},
    )
    return UpcomingInvoice(
        amount_due=inv.get("amount_due") or 0,
        currency=inv.get("currency") or "",
        next_payment_attempt=_ts(inv.get("next_payment_attempt")),
        period_end=_ts(inv.get("period_end")),
    )


def meter_event_create(
    *, event_name: str, customer_id: str, value: str, identifier: str, timestamp: int
) -> None:
    _call(
        f"report usage {identifier}",
        _client().v1.billing.meter_events.create,
        {
            "event_name": event_name,
            "identifier": identifier,
            "timestamp": timestamp,
            "payload": {"stripe_customer_id": customer_id, "value": value},
        },
        {"idempotency_key": identifier},
    )
