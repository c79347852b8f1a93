"""Tenants' own HTTP receivers: Slack-compatible incoming webhooks and generic webhooks. One POST
per call, with short connect and read timeouts (the caller bounds a whole batch: notifications.py),
no redirects followed (a redirect could point inside our network), and one error type saying why the
receiver did not take the message."""

import requests
from django.conf import settings

from observability.clients import ServiceError


class WebhookError(ServiceError):
    service = "webhook"


def post(*, url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    """POST BODY (JSON) to URL; raise WebhookError unless the receiver answers 2xx."""
    try:
        response = requests.post(
            url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "CHOM-Notifications/1",
                **(headers or {}),
            },
            timeout=(
                settings.OBSERVABILITY_NOTIFY_CONNECT_TIMEOUT,
                settings.OBSERVABILITY_NOTIFY_READ_TIMEOUT,
            ),
            allow_redirects=False,
        )
    except requests.Timeout as exc:
        phase = "connect" if isinstance(exc, requests.ConnectTimeout) else "answer"
        raise WebhookError(
            f"timed out: the receiver did not {phase} in time ({exc.__class__.__name__})"
        ) from exc
    except requests.RequestException as exc:
        raise WebhookError(f"could not reach the receiver: {exc.__class__.__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise WebhookError(
            f"the receiver answered {response.status_code}: {response.text[:200]}",
            permanent=400 <= response.status_code < 500 and response.status_code not in (408, 429),
            status=response.status_code,
        )
