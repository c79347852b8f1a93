"""Alerts: raised by CHOM itself (capacity, host keys, unreachable VPSes, failed drills) or received
from Alertmanager's webhook; deduplicated by fingerprint, and notified once per transition."""

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chom.errors import ApplicationError
from chom.models import Membership, Tenant
from chom.services import audit_record
from observability import tenant_alerts
from observability.clients import alertmanager
from observability.models import Alert, Notification

logger = logging.getLogger(__name__)

MAX_NOTIFY_ATTEMPTS = 5
SENDING_RECLAIM_SECONDS = 600


def alert_raise(
    *, name: str, key: str, summary: str, severity: str = "warning", labels=None, tenant=None
) -> Alert:
    """Fire (or refresh) the alert NAME for KEY. Repeated calls update one firing row."""
    alert, _ = _fire(
        fingerprint=f"{name}:{key}",
        name=name,
        summary=summary,
        severity=severity,
        labels=labels or {},
        tenant=tenant,
    )
    return alert


def alert_resolve(*, name: str, key: str) -> bool:
    return _resolve(fingerprint=f"{name}:{key}", at=timezone.now()) is not None


def _fire(*, fingerprint: str, name: str, summary: str, started_at: datetime | None = None, **fields):
    """(alert, created). A new firing row queues its notifications."""
    now = timezone.now()
    alert = Alert.objects.filter(fingerprint=fingerprint, status=Alert.Status.FIRING).first()
    if alert:
        Alert.objects.filter(pk=alert.pk).update(last_seen_at=now, summary=summary)
        return alert, False
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                fingerprint=fingerprint,
                name=name[:100],
                summary=summary,
                started_at=started_at or now,
                last_seen_at=now,
                **fields,
            )
            _queue_notifications(alert, Notification.Event.FIRING)
            tenant_alerts.alert_told(alert, firing=True)
    except IntegrityError:  # raised concurrently by another process: that row is the alert
        return Alert.objects.get(fingerprint=fingerprint, status=Alert.Status.FIRING), False
    logger.warning("alert %s firing: %s", fingerprint, summary)
    return alert, True


def _resolve(*, fingerprint: str, at: datetime) -> Alert | None:
    alert = Alert.objects.filter(fingerprint=fingerprint, status=Alert.Status.FIRING).first()
    if alert is None:
        return None
    with transaction.atomic():
        changed = Alert.objects.filter(pk=alert.pk, status=Alert.Status.FIRING).update(
            status=Alert.Status.RESOLVED, resolved_at=at, last_seen_at=timezone.now()
        )
        if not changed:
            return None
        alert.refresh_from_db()
        _queue_notifications(alert, Notification.Event.RESOLVED)
        tenant_alerts.alert_told(alert, firing=False)
    return alert


# --- Alertmanager ---------------------------------------------------------------------------------


class InvalidPayload(ValueError):
    pass


@dataclass(frozen=True)
class IngestResult:
    created: int = 0
    refreshed: int = 0
    resolved: int = 0


def _severity(labels: dict) -> str:
    value = labels.get("severity", "")
    return value if value in Alert.Severity.values else Alert.Severity.WARNING


def _time(raw) -> datetime | None:
    moment = parse_datetime(raw) if isinstance(raw, str) else None
    # Alertmanager sends 0001-01-01T00:00:00Z for "no end yet".
    return moment if moment and moment.year > 1 else None


def _owner_of(labels: dict):
    """(tenant, site) named by the alert's labels: CHOM's own metrics and dedicated VPS targets
    carry `tenant` (slug) and/or `site` (the site's unix user, as in the Loki labels)."""
    from sites.models import Site

    site = None
    if labels.get("site"):
        site = Site.objects.filter(unix_user=labels["site"]).select_related("tenant").first()
    if site is not None:
        return site.tenant, site
    if labels.get("tenant"):
        return Tenant.objects.filter(slug=labels["tenant"]).first(), None
    return None, None


def _validated(payload) -> list[dict]:
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise InvalidPayload("expected an Alertmanager webhook payload with an 'alerts' list")
    for item in payload["alerts"]:
        if not isinstance(item, dict) or not isinstance(item.get("labels"), dict):
            raise InvalidPayload("every alert needs a 'labels' object")
        if item.get("status") not in ("firing", "resolved") or not item.get("fingerprint"):
            raise InvalidPayload("every alert needs status firing|resolved and a fingerprint")
    return payload["alerts"]


def alertmanager_ingest(*, payload) -> IngestResult:
    """Apply one webhook call. Alertmanager re-sends firing alerts on every group interval: those
    only refresh the row. Resolution is recorded once."""
    created = refreshed = resolved = 0
    for item in _validated(payload):
        labels = {str(k): str(v) for k, v in item["labels"].items()}
        annotations = {str(k): str(v) for k, v in (item.get("annotations") or {}).items()}
        fingerprint = f"am:{str(item['fingerprint'])[:190]}"
        if item["status"] == "resolved":
            resolved += (
                _resolve(fingerprint=fingerprint, at=_time(item.get("endsAt")) or timezone.now()) is not None
            )
            continue
        tenant, site = _owner_of(labels)
        name = labels.get("alertname", "alert")
        _, new = _fire(
            fingerprint=fingerprint,
            name=name,
            summary=annotations.get("summary") or annotations.get("description") or name,
            started_at=_time(item.get("startsAt")),
            source="alertmanager",
            severity=_severity(labels),
            labels=labels,
            annotations=annotations,
            tenant=tenant,
            site=site,
        )
        created += new
        refreshed += not new
    return IngestResult(created=created, refreshed=refreshed, resolved=resolved)


# --- acknowledgement and silences -------------------------------------------------------------

SILENCE_MIN = timedelta(minutes=1)
SILENCE_MAX = timedelta(days=30)


def alert_acknowledge(*, alert: Alert, actor, source_ip=None) -> Alert:
    """Record who took a firing alert on, once: acknowledging it again keeps the first record."""
    with transaction.atomic():
        changed = Alert.objects.filter(pk=alert.pk, status=Alert.Status.FIRING, acknowledged_at=None).update(
            acknowledged_at=timezone.now(),
            acknowledged_by=actor if actor is not None and actor.is_authenticated else None,
        )
        alert.refresh_from_db()
        if changed:
            audit_record(
                action="alert.acknowledged",
                actor=actor,
                tenant=alert.tenant,
                target=f"alert:{alert.pk}",
                source_ip=source_ip,
                data={"name": alert.name, "fingerprint": alert.fingerprint},
            )
    if alert.acknowledged_at is None:
        raise ApplicationError(
            409, "alert_resolved", f"{alert.name} is resolved already: there is nothing to acknowledge."
        )
    return alert


def _span(duration: timedelta) -> str:
    minutes = int(duration.total_seconds() // 60)
    for unit, size in (("day", 1440), ("hour", 60)):
        if minutes % size == 0:
            return f"{minutes // size} {unit}{'s' if minutes != size else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def alert_silence(*, alert: Alert, duration: timedelta, actor, comment: str = "", source_ip=None) -> str:
    """Mute ALERT in Alertmanager for DURATION: a silence matching exactly its labels. Returns the
    silence's id."""
    if not alert.is_silenceable:
        raise ApplicationError(
            409,
            "not_silenceable",
            f"{alert.name} is raised by CHOM itself, not by Alertmanager, so an Alertmanager silence "
            "cannot mute it. Acknowledge it instead.",
        )
    if not alert.is_firing:
        raise ApplicationError(
            409, "alert_resolved", f"{alert.name} is resolved already: nothing to silence."
        )
    if not SILENCE_MIN <= duration <= SILENCE_MAX:
        message = f"A silence lasts from {_span(SILENCE_MIN)} to {_span(SILENCE_MAX)}."
        raise ApplicationError(400, "invalid_input", message, {"duration": [message]})
    now = timezone.now()
    ends_at = now + duration
    silence_id = alertmanager.silence_create(
        matchers=[alertmanager.Matcher(name, value) for name, value in sorted(alert.labels.items())],
        starts_at=now,
        ends_at=ends_at,
        created_by=str(actor) if actor is not None else "CHOM",
        comment=comment.strip() or f"silenced from CHOM for {_span(duration)}: {alert.summary}"[:500],
    )
    audit_record(
        action="alert.silenced",
        actor=actor,
        tenant=alert.tenant,
        target=f"alert:{alert.pk}",
        source_ip=source_ip,
        data={
            "name": alert.name,
            "silence": silence_id,
            "for": _span(duration),
            "until": ends_at.isoformat(),
        },
    )
    return silence_id


def silence_expire(*, silence_id: str, actor, source_ip=None) -> None:
    """End a silence now, whoever created it (CHOM or amtool). An expired one stays as it is."""
    try:
        silence = alertmanager.silence_get(silence_id=silence_id)
        if silence.state == "expired":
            return
        alertmanager.silence_expire(silence_id=silence_id)
    except alertmanager.SilenceNotFound as exc:
        raise ApplicationError(404, "not_found", f"Alertmanager has no silence {silence_id}.") from exc
    audit_record(
        action="silence.expired",
        actor=actor,
        target=f"silence:{silence_id}",
        source_ip=source_ip,
        data={
            "matchers": ", ".join(str(m) for m in silence.matchers),
            "created_by": silence.created_by,
        },
    )


# --- notifications --------------------------------------------------------------------------------


def webhook_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def alert_recipients(alert: Alert) -> list[tuple[str, str]]:
    """(channel, recipient): staff addresses and webhooks always; the owners of the tenant an
    alert belongs to as well."""
    emails = list(settings.ALERT_EMAILS)
    if alert.tenant_id:
        owners = Membership.objects.filter(tenant_id=alert.tenant_id, role=Membership.Role.OWNER)
        emails += [m.user.email for m in owners.select_related("user") if m.user.email]
    recipients = [(Notification.Channel.EMAIL, e) for e in dict.fromkeys(emails)]
    recipients += [(Notification.Channel.WEBHOOK, webhook_hash(u)) for u in settings.ALERT_WEBHOOK_URLS]
    return recipients


def _queue_notifications(alert: Alert, event: str) -> None:
    rows = [
        Notification(alert=alert, event=event, channel=channel, recipient=recipient)
        for channel, recipient in alert_recipients(alert)
    ]
    if not rows:
        return
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    from observability import tasks

    transaction.on_commit(lambda: tasks.deliver_notifications.delay())


def _message(alert: Alert, event: str) -> tuple[str, str]:
    where = " ".join(f"{k}={alert.labels[k]}" for k in ("vps", "site", "tenant") if alert.labels.get(k))
    subject = f"[CHOM] {event.upper()}: {alert.name}" + (f" ({where})" if where else "")
    body = "\n".join(
        [
            alert.summary,
            "",
            f"severity: {alert.severity}",
            f"started: {alert.started_at:%Y-%m-%d %H:%M:%S} UTC",
            *([f"resolved: {alert.resolved_at:%Y-%m-%d %H:%M:%S} UTC"] if alert.resolved_at else []),
            *(f"{k}: {v}" for k, v in sorted(alert.labels.items())),
            "",
            f"{settings.SITE_URL.rstrip('/')}/observability/alerts/",
        ]
    )
    return subject, body


def _send(notification: Notification) -> None:
    subject, body = _message(notification.alert, notification.event)
    if notification.channel == Notification.Channel.EMAIL:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [notification.recipient])
        return
    urls = {webhook_hash(u): u for u in settings.ALERT_WEBHOOK_URLS}
    url = urls.get(notification.recipient)
    if url is None:
        raise RuntimeError("this webhook is no longer in ALERT_WEBHOOK_URLS")
    response = requests.post(
        url, json={"text": f"*{subject}*\n{body}"}, timeout=settings.OBSERVABILITY_NOTIFY_TIMEOUT
    )
    if response.status_code >= 300:
        raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:200]}")


def notifications_deliver() -> dict[str, int]:
    """Send every pending notification. Each row is claimed (pending → sending) before its I/O, so
    two workers never send one twice; a row stuck in `sending` (worker died) is retried later."""
    stuck_since = timezone.now() - timedelta(seconds=SENDING_RECLAIM_SECONDS)
    Notification.objects.filter(status=Notification.Status.SENDING, claimed_at__lt=stuck_since).update(
        status=Notification.Status.PENDING
    )
    counts = {"sent": 0, "failed": 0, "retry": 0}
    for notification in Notification.objects.filter(status=Notification.Status.PENDING).select_related(
        "alert"
    ):
        claimed = Notification.objects.filter(pk=notification.pk, status=Notification.Status.PENDING).update(
            status=Notification.Status.SENDING, attempts=F("attempts") + 1, claimed_at=timezone.now()
        )
        if not claimed:
            continue
        try:
            _send(notification)
        except Exception as exc:  # noqa: BLE001 - SMTP, HTTP or config: recorded on the row
            final = notification.attempts + 1 >= MAX_NOTIFY_ATTEMPTS
            status = Notification.Status.FAILED if final else Notification.Status.PENDING
            Notification.objects.filter(pk=notification.pk).update(status=status, error=str(exc)[:2000])
            counts["failed" if final else "retry"] += 1
            logger.warning("notification %s: %s", notification.pk, exc)
            continue
        Notification.objects.filter(pk=notification.pk).update(
            status=Notification.Status.SENT, sent_at=timezone.now(), error=""
        )
        counts["sent"] += 1
    return counts
