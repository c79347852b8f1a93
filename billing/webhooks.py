"""POST /webhooks/stripe: verify, store by event id, queue processing, answer fast."""

import json
import logging

import stripe
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import services
from chom.api.errors import error_body

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request):
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        return JsonResponse(
            error_body("billing_not_configured", "This CHOM does not accept Stripe webhooks."), status=503
        )
    try:
        stripe.Webhook.construct_event(
            request.body,
            request.headers.get("Stripe-Signature", ""),
            secret,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE,
        )
    except (ValueError, stripe.SignatureVerificationError) as exc:
        logger.warning("rejected Stripe webhook from %s: %s", request.META.get("REMOTE_ADDR"), exc)
        return JsonResponse(
            error_body("invalid_signature", f"Webhook rejected: {exc}"),
            status=400,
        )
    payload = json.loads(request.body)
    if not payload.get("id"):
        return JsonResponse(error_body("invalid_event", "The event has no id."), status=400)
    event, created = services.stripe_event_record(payload=payload)
    # Stripe retries anything but 2xx; a duplicate is already stored, so it is acknowledged too.
    return JsonResponse({"received": event.event_id, "duplicate": not created})
