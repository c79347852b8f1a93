"""Telling a tenant what happened to their sites, from any layer.

Sites, backups and TLS code notice events (a deploy succeeded or failed, a certificate was issued)
but sit below observability, which owns the tenant's notification channels and their delivery.
They call `event_emit`; observability registers the implementation in its `AppConfig.ready()`
(`register_events`). Without it (observability not installed) an event is only logged.
"""

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

EVENTS = (
    "deploy.succeeded",
    "deploy.failed",
    "backup.failed",
    "certificate.issued",
    "certificate.failed",
    "certificate.expiring",
    "site.down",
    "site.up",
    "site.suspended",
    "alert.resolved",
)

_emit: Callable[..., Any] | None = None


def register_events(*, emit: Callable[..., Any]) -> None:
    global _emit
    _emit = emit


def event_emit(*, event: str, tenant, message: str, site=None) -> None:
    """Notify TENANT's channels that want EVENT (one of EVENTS) about SITE. Never raises: a
    notification problem must not fail the work that noticed the event."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    if _emit is None:
        logger.info(
            "event %s for tenant %s not delivered, no notification backend: %s", event, tenant, message
        )
        return
    try:
        _emit(event=event, tenant=tenant, site=site, message=message)
    except Exception:  # noqa: BLE001 - logged; the deploy (or backup, ...) itself went as it went
        logger.exception("event %s for tenant %s could not be queued", event, tenant)
