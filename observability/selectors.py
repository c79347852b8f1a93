"""Reads of alerts, always scoped: a tenant sees only its own alerts, staff see all. Silences are
read from Alertmanager, which owns them."""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from observability.clients import ServiceError, alertmanager
from observability.models import Alert, ChannelDelivery, NotificationChannel


def alerts_visible(*, tenant, staff: bool = False) -> QuerySet[Alert]:
    qs = Alert.objects.select_related("tenant", "site", "acknowledged_by")
    if staff:
        return qs
    return qs.filter(tenant=tenant) if tenant is not None else qs.none()


def channels_visible(*, tenant) -> QuerySet[NotificationChannel]:
    """A tenant's own notification channels (staff tokens have no tenant, so none)."""
    return (
        NotificationChannel.objects.filter(tenant=tenant)
        if tenant is not None
        else NotificationChannel.objects.none()
    )


def channel_deliveries_recent(*, channel: NotificationChannel, limit: int = 20) -> QuerySet[ChannelDelivery]:
    return channel.deliveries.order_by("-created_at", "-id")[:limit]


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def alerts_filtered(
    qs: QuerySet[Alert],
    *,
    status: str = "",
    name: str = "",
    severity: str = "",
    tenant: str = "",
    source: str = "",
    since: date | None = None,
    until: date | None = None,
) -> QuerySet[Alert]:
    """Empty filters are no filter. SINCE/UNTIL (days, both included) keep the alerts that were
    firing at some moment of that span."""
    if status:
        qs = qs.filter(status=status)
    if name:
        qs = qs.filter(name__icontains=name)
    if severity:
        qs = qs.filter(severity=severity)
    if tenant:
        qs = qs.filter(tenant__slug=tenant)
    if source:
        qs = qs.filter(source=source)
    if since:
        qs = qs.filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=_day_start(since)))
    if until:
        qs = qs.filter(started_at__lt=_day_start(until + timedelta(days=1)))
    return qs


@dataclass(frozen=True)
class SilenceListing:
    silences: list[alertmanager.Silence] = field(default_factory=list)
    problem: str = ""  # why the list is missing: Alertmanager down or not configured

    def muting(self, alert: Alert) -> list[alertmanager.Silence]:
        """The active silences that mute ALERT in Alertmanager."""
        if not alert.is_silenceable:
            return []
        return [s for s in self.silences if s.state == "active" and s.matches(alert.labels)]


def silences_listed(*, states: tuple[str, ...] = ("active", "pending")) -> SilenceListing:
    """Alertmanager's silences; a page showing them still renders when Alertmanager does not answer."""
    try:
        return SilenceListing(alertmanager.silences(states=states))
    except ServiceError as exc:
        return SilenceListing(problem=exc.message)
