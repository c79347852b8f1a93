"""Tenants' notification channels (email, Slack-compatible webhook, generic signed webhook) and the
delivery of site events to them: one ChannelDelivery row per (event, channel), claimed before its
I/O, sent at once when the event is recorded (`observability.send_channel_deliveries`, just that
event's rows), retried by the beat job `observability.deliver_notifications`, its last error kept
for the channel's detail. Both tasks run on the `notify` queue, which a worker of its own consumes
(deploy/README.md), and send a batch concurrently within a short deadline: a tenant's receivers
that accept connections and never answer cost that batch seconds and never hold a deploy worker.

A generic webhook's body is JSON `{"event", "site", "message", "occurred_at"}`; the receiver checks
`X-Chom-Signature: sha256=<hex>`, an HMAC-SHA256 with the channel's secret over
`X-Chom-Timestamp + "." + body`, and refuses old timestamps."""

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
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
# One event's deliveries (at most a tenant's channels) go out at once; the beat job's retries go
# out this many at a time, a bounded number of batches per run.
SEND_POOL = MAX_CHANNELS_PER_TENANT
MAX_BATCHES_PER_RUN = 5
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


def send_deadline() -> float:
    """Seconds one batch of sends may take in all: a connect and a read, and a second's margin."""
    return settings.OBSERVABILITY_NOTIFY_CONNECT_TIMEOUT + settings.OBSERVABILITY_NOTIFY_READ_TIMEOUT + 1


def _claim(delivery: ChannelDelivery) -> bool:
    """pending → sending, or False when another worker has it."""
    claimed = ChannelDelivery.objects.filter(pk=delivery.pk, status=ChannelDelivery.Status.PENDING).update(
        status=ChannelDelivery.Status.SENDING, attempts=F("attempts") + 1, claimed_at=timezone.now()
    )
    if claimed:
        delivery.refresh_from_db(fields=["attempts"])
    return bool(claimed)


def _send_at_once(deliveries: list[ChannelDelivery]) -> dict[int, Exception | None]:
    """Send DELIVERIES concurrently, one daemon thread each (the caller bounds how many), and wait
    at most `send_deadline()` for them all: a hung receiver costs its batch seconds, never a worker
    slot for minutes. {id: None (sent) or the error}; what has not answered by then has timed out.
    The threads do only I/O (channels are loaded beforehand); the caller records every outcome."""
    outcomes: dict[int, Exception | None] = {}

    def send(delivery: ChannelDelivery) -> None:
        try:
            _send(delivery)
        except Exception as exc:  # noqa: BLE001 - SMTP, HTTP or a refused URL: recorded on the row
            outcomes[delivery.pk] = exc
        else:
            outcomes[delivery.pk] = None

    threads = [
        threading.Thread(target=send, args=(d,), name=f"chom-notify-{d.pk}", daemon=True) for d in deliveries
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + send_deadline()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    done = dict(outcomes)  # a send finishing after the deadline is ignored: its row is retried
    timed_out = webhooks.WebhookError(f"timed out: the receiver did not answer within {send_deadline():g} s")
    return {d.pk: done[d.pk] if d.pk in done else timed_out for d in deliveries}


def _record(delivery: ChannelDelivery, error: Exception | None) -> str:
    """The outcome of a claimed DELIVERY: sent, retry (pending again, its error kept) or failed."""
    if error is None:
        ChannelDelivery.objects.filter(pk=delivery.pk).update(
            status=ChannelDelivery.Status.SENT, sent_at=timezone.now(), error=""
        )
        return "sent"
    permanent = isinstance(error, webhooks.WebhookError) and error.permanent
    final = permanent or delivery.attempts >= MAX_DELIVERY_ATTEMPTS
    status = ChannelDelivery.Status.FAILED if final else ChannelDelivery.Status.PENDING
    ChannelDelivery.objects.filter(pk=delivery.pk).update(status=status, error=str(error)[:2000])
    logger.warning("channel delivery %s (attempt %s): %s", delivery.pk, delivery.attempts, error)
    return "failed" if final else "retry"


def _deliver_batch(deliveries: list[ChannelDelivery]) -> list[str]:
    claimed = [d for d in deliveries if _claim(d)]
    outcomes = _send_at_once(claimed)
    return [_record(d, outcomes[d.pk]) for d in claimed]


def _deliver(delivery: ChannelDelivery) -> str:
    """Claim DELIVERY (pending → sending), send it, record the outcome: sent, retry or failed."""
    return (_deliver_batch([delivery]) or ["skipped"])[0]


def channel_deliveries_send(*, ids: list[int] | None = None) -> dict[str, int]:
    """Send pending deliveries (only those of IDS when given) SEND_POOL at a time, each batch
    concurrently within `send_deadline()`; the beat job's run stops after MAX_BATCHES_PER_RUN
    batches (the rest is the next run's). A row stuck in `sending` (its worker died) is retried."""
    stuck_since = timezone.now() - timedelta(seconds=SENDING_RECLAIM_SECONDS)
    ChannelDelivery.objects.filter(status=ChannelDelivery.Status.SENDING, claimed_at__lt=stuck_since).update(
        status=ChannelDelivery.Status.PENDING
    )
    counts = {"sent": 0, "failed": 0, "retry": 0}
    pending = ChannelDelivery.objects.filter(status=ChannelDelivery.Status.PENDING).select_related("channel")
    if ids is not None:
        pending = pending.filter(pk__in=ids)
    after = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        batch = list(pending.filter(pk__gt=after).order_by("id")[:SEND_POOL])
        if not batch:
            break
        after = batch[-1].pk
        for outcome in _deliver_batch(batch):
            counts[outcome] += 1
    return counts
