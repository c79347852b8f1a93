"""Billing switched on (STRIPE_SECRET_KEY set) but half configured must stop the start, not fail later."""

from django.conf import settings
from django.core.checks import Error, register

from chom.tiers import TIERS


@register("billing")
def stripe_configuration_check(app_configs=None, **kwargs) -> list[Error]:
    if not settings.STRIPE_SECRET_KEY:
        if settings.STRIPE_WEBHOOK_SECRET:
            return [
                Error(
                    "STRIPE_WEBHOOK_SECRET is set but STRIPE_SECRET_KEY is not: billing is half configured.",
                    hint="Set STRIPE_SECRET_KEY, or unset STRIPE_WEBHOOK_SECRET to run without billing.",
                    id="billing.E001",
                )
            ]
        return []
    errors = []
    if not settings.STRIPE_WEBHOOK_SECRET:
        errors.append(
            Error(
                "STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: webhooks could not be verified.",
                hint="Copy the signing secret (whsec_...) of the /webhooks/stripe endpoint from Stripe.",
                id="billing.E002",
            )
        )
    missing = [
        f"STRIPE_PRICE_{tier.upper()}"
        for tier in TIERS
        if not getattr(settings, f"STRIPE_PRICE_{tier.upper()}")
    ]
    if missing:
        errors.append(
            Error(
                f"Billing is on but these tier prices are not set: {', '.join(missing)}.",
                hint="Set each to the Stripe price id (price_...) of that tier.",
                id="billing.E003",
            )
        )
    prices = [getattr(settings, f"STRIPE_PRICE_{tier.upper()}") for tier in TIERS]
    if not missing and len(set(prices)) != len(prices):
        errors.append(
            Error(
                "Two tiers share one Stripe price id: a subscription's tier would be ambiguous.",
                id="billing.E004",
            )
        )
    return errors
