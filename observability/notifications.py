"""Tenants' notification channels (email, Slack-compatible webhook, generic signed webhook) and the
delivery of site events to them: one ChannelDelivery row per (event, channel), claimed before its
I/O, sent at once when the event is recorded (`observability.send_channel_deliveries`, just that
event's rows), retried by the beat job `observability.deliver_notifications`, its last error kept
for the channel's detail.

A generic webhook's body is JSON `{"event", "site", "message", "occurred_at"}`; the receiver checks
`X-Chom-Signature: sha256=<hex>`, an HMAC-SHA256 with the channel's secret over
`X-Chom-Timestamp + "." + body`, and refuses old timestamps."""

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chom.errors import ApplicationError
from chom.events import EVENTS
from chom.services import audit_record
from observability.clients import webhooks
from observability.models import ChannelDelivery, NotificationChannel
from sites.repositories import RepositoryRefused, repository_url_check

logger = logging.getLogger(__name__)

MAX_CHANNELS_PER_TENANT = 20
MAX_DELIVERY_ATTEMPTS = 5
SENDING_RECLAIM_SECONDS = 600
TEST_EVENT = "test"


class UrlRefused(ValueError):
    pass


def channel_url_check(url: str) -> None:
    """Raise UrlRefused unless CHOM may POST to URL: https to a public address, or http only to a
    literal address in REPOSITORY_ALLOWED_NETWORKS (an on-premise receiver). Loopback, private,
    link-local addresses and CHOM's own services are refused as for repository URLs."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UrlRefused("Use an https:// URL.")
    if parts.username or parts.password:
        raise UrlRefused("Do not put a user name or password in the URL.")
    if parts.scheme == "http":
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            address = None
        allowed = [ipaddress.ip_network(c, strict=False) for c in settings.REPOSITORY_ALLOWED_NETWORKS]
        if address is None or not any(address in network for network in allowed):
            raise UrlRefused(
                "Use an https:// URL (plain http is only for addresses this installation allows)."
            )
    try:
        repository_url_check(url)
    except RepositoryRefused as exc:
        raise UrlRefused(f"This URL may not be used: {exc}") from exc


def _refuse(field: str, message: str) -> ApplicationError:
    return ApplicationError(400, "invalid_input", message, {field: [message]})


def channel_create(
    *,
    tenant,
    kind: str,
    events: list[str],
    name: str = "",
    address: str = "",
    url: str = "",
    actor=None,
    source_ip=None,
) -> tuple[NotificationChannel, str]:
    """(channel, secret): the generic webhook's signing secret, shown once; "" for other kinds."""
    if kind not in NotificationChannel.Kind.values:
        raise _refuse("kind", f"Use one of {', '.join(NotificationChannel.Kind.values)}.")
    unknown = sorted(set(events) - set(EVENTS))
    if unknown or not events:
        raise _refuse("events", f"Choose events from {', '.join(EVENTS)}.")
    if kind == NotificationChannel.Kind.EMAIL:
        if not address:
            raise _refuse("address", "An email channel needs an address.")
        target = address
    else:
        if not url:
            raise _refuse("url", f"A {kind} channel needs a URL.")
        try:
            channel_url_check(url)
        except UrlRefused as exc:
            raise _refuse("url", str(exc)) from exc
        target = url
    if NotificationChannel.objects.filter(tenant=tenant).count() >= MAX_CHANNELS_PER_TENANT:
        raise ApplicationError(
            409, "limit_reached", f"A tenant has at most {MAX_CHANNELS_PER_TENANT} notification channels."
        )
    secret = secrets.token_urlsafe(32) if kind == NotificationChannel.Kind.WEBHOOK else ""
    with transaction.atomic():
        channel = NotificationChannel.objects.create(
            tenant=tenant, kind=kind, name=(name or kind)[:100], target=target, secret=secret,
            events=[e for e in EVENTS if e in events],
        )  # fmt: skip
        audit_record(
            action="notification_channel.created",
            actor=actor,
            tenant=tenant,
            target=f"notification_channel:{channel.pk}",
            source_ip=source_ip,
            data={
                "kind": kind,
                "name": channel.name,
                "target": channel.target_display,
                "events": channel.events,
            },
        )
    return channel, secret


def channel_delete(*, channel: NotificationChannel, actor=None, source_ip=None) -> None:
    with transaction.atomic():
        audit_record(
            action="notification_channel.deleted",
            actor=actor,
            tenant=channel.tenant,
            target=f"notification_channel:{channel.pk}",
            source_ip=source_ip,
            data={"kind": channel.kind, "name": channel.name, "target": channel.target_display},
        )
        channel.delete()


def event_notify(*, event: str, tenant, message: str, site=None) -> list[ChannelDelivery]:
    """Queue EVENT for every channel of TENANT that wants it, and deliver them once committed.
    Registered as core's event backend (chom.events.event_emit)."""
    if tenant is None:
        return []
    channels = NotificationChannel.objects.filter(tenant=tenant).defer("target", "secret")
    now = timezone.now()
    domain = getattr(site, "domain", "") or ""
    rows = [
        ChannelDelivery(channel=c, event=event, site=domain, message=message[:4000], occurred_at=now)
        for c in channels
        if c.wants(event)
    ]
    if not rows:
        return []
    created = ChannelDelivery.objects.bulk_create(rows)
    _enqueue([d.pk for d in created])
    return created


def _enqueue(delivery_ids: list[int]) -> None:
    """Send these deliveries, and only these, once committed: a task sending every pending row
    would first wait out other tenants' unreachable receivers (each up to the client's timeout).
    Their retries are the beat job's."""
    from observability import tasks

    transaction.on_commit(lambda: tasks.send_channel_deliveries.delay(delivery_ids))


def channel_test(*, channel: NotificationChannel, actor=None) -> ChannelDelivery:
    """Send a sample event to CHANNEL now; the delivery (sent, or pending with the error and
    retried like any other) is returned."""
    delivery = ChannelDelivery.objects.create(
        channel=channel,
        event=TEST_EVENT,
        site="example.com",
        message=f"A test notification from CHOM, sent by {actor or 'CHOM'}: this channel works.",
        is_test=True,
    )
    _deliver(delivery)
    delivery.refresh_from_db()
    return delivery


# --- delivery -------------------------------------------------------------------------------------


def _text(delivery: ChannelDelivery) -> str:
    where = f" {delivery.site}" if delivery.site else ""
    return f"[CHOM] {delivery.event}{where}: {delivery.message}"


def signature(*, secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _send(delivery: ChannelDelivery) -> None:
    channel = delivery.channel
    if channel.kind == NotificationChannel.Kind.EMAIL:
        body = f"{delivery.message}\n\nevent: {delivery.event}\nsite: {delivery.site or '-'}\n"
        body += f"at: {delivery.occurred_at:%Y-%m-%d %H:%M:%S} UTC\n"
        send_mail(_text(delivery)[:200], body, settings.DEFAULT_FROM_EMAIL, [channel.target])
        return
    try:  # again now: what a name resolves to may have changed since the channel was created
        channel_url_check(channel.target)
    except UrlRefused as exc:
        raise webhooks.WebhookError(str(exc), permanent=True) from exc
    if channel.kind == NotificationChannel.Kind.SLACK:
        webhooks.post(url=channel.target, body=json.dumps({"text": _text(delivery)}).encode())
        return
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "X-Chom-Timestamp": timestamp,
        "X-Chom-Signature": f"sha256={signature(secret=channel.secret, timestamp=timestamp, body=body)}",
        "X-Chom-Event": delivery.event,
        "X-Chom-Delivery": str(delivery.pk),
    }
    webhooks.post(url=channel.target, body=body, headers=headers)


def _deliver(delivery: ChannelDelivery) -> str:
    """Claim DELIVERY (pending → sending), send it, record the outcome: sent, retry or failed."""
    claimed = ChannelDelivery.objects.filter(pk=delivery.pk, status=ChannelDelivery.Status.PENDING).update(
        status=ChannelDelivery.Status.SENDING, attempts=F("attempts") + 1, claimed_at=timezone.now()
    )
    if not claimed:
        return "skipped"
    delivery.refresh_from_db()
    try:
        _send(delivery)
    except Exception as exc:  # noqa: BLE001 - SMTP, HTTP or a refused URL: recorded on the row
        permanent = isinstance(exc, webhooks.WebhookError) and exc.permanent
        final = permanent or delivery.attempts >= MAX_DELIVERY_ATTEMPTS
        status = ChannelDelivery.Status.FAILED if final else ChannelDelivery.Status.PENDING
        ChannelDelivery.objects.filter(pk=delivery.pk).update(status=status, error=str(exc)[:2000])
        logger.warning("channel delivery %s (attempt %s): %s", delivery.pk, delivery.attempts, exc)
        return "failed" if final else "retry"
    ChannelDelivery.objects.filter(pk=delivery.pk).update(
        status=ChannelDelivery.Status.SENT, sent_at=timezone.now(), error=""
    )
    return "sent"


def channel_deliveries_send(*, ids: list[int] | None = None) -> dict[str, int]:
    """Send every pending delivery (only those of IDS when given); a row stuck in `sending` (its
    worker died) is retried later."""
    stuck_since = timezone.now() - timedelta(seconds=SENDING_RECLAIM_SECONDS)
    ChannelDelivery.objects.filter(status=ChannelDelivery.Status.SENDING, claimed_at__lt=stuck_since).update(
        status=ChannelDelivery.Status.PENDING
    )
    counts = {"sent": 0, "failed": 0, "retry": 0}
    pending = ChannelDelivery.objects.filter(status=ChannelDelivery.Status.PENDING).order_by("id")
    if ids is not None:
        pending = pending.filter(pk__in=ids)
    for delivery in pending.select_related("channel"):
        outcome = _deliver(delivery)
        if outcome in counts:
            counts[outcome] += 1
    return counts
