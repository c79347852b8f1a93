"""Alerts raised by CHOM itself (capacity, host keys, unreachable VPSes, failed drills)."""

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from observability.models import Alert

logger = logging.getLogger(__name__)


def alert_raise(
    *, name: str, key: str, summary: str, severity: str = "warning", labels=None, tenant=None
) -> Alert:
    """Fire (or refresh) the alert NAME for KEY. Repeated calls update one firing row."""
    fingerprint = f"{name}:{key}"
    now = timezone.now()
    alert = Alert.objects.filter(fingerprint=fingerprint, status=Alert.Status.FIRING).first()
    if alert:
        Alert.objects.filter(pk=alert.pk).update(last_seen_at=now, summary=summary)
        return alert
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                fingerprint=fingerprint,
                name=name,
                summary=summary,
                severity=severity,
                labels=labels or {},
                tenant=tenant,
                started_at=now,
                last_seen_at=now,
            )
    except IntegrityError:  # raised concurrently by another process: that row is the alert
        return Alert.objects.get(fingerprint=fingerprint, status=Alert.Status.FIRING)
    logger.warning("alert %s firing: %s", fingerprint, summary)
    return alert


def alert_resolve(*, name: str, key: str) -> bool:
    changed = Alert.objects.filter(fingerprint=f"{name}:{key}", status=Alert.Status.FIRING).update(
        status=Alert.Status.RESOLVED, resolved_at=timezone.now()
    )
    return bool(changed)
