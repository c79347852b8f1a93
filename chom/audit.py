"""The audit log's reads, and the link from an event's target to its page in the dashboard.

A target is "<kind>:<identifier>" ("vps:web-1", "site:shop.example.com", "tenant:acme",
"backup:12"), as `audit_record`'s callers write it. The app that owns a kind knows where its page
is: it registers a resolver for the kind in its `AppConfig.ready()`. A kind nobody registered, or a
target whose object is gone, is shown as text.
"""

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta

from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from chom.models import AuditEvent, Operation, Tenant

# identifiers of one kind -> {identifier: url} for those that have a page
TargetResolver = Callable[[set[str]], dict[str, str]]
_RESOLVERS: dict[str, TargetResolver] = {}


def register_audit_target(kind: str) -> Callable[[TargetResolver], TargetResolver]:
    def decorator(resolver: TargetResolver) -> TargetResolver:
        _RESOLVERS[kind] = resolver
        return resolver

    return decorator


def audit_target_urls(targets: Iterable[str]) -> dict[str, str]:
    """{target: url} for the TARGETS that link somewhere; one resolver call per kind."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for target in targets:
        kind, _, identifier = target.partition(":")
        if identifier and kind in _RESOLVERS:
            wanted[kind].add(identifier)
    return {
        f"{kind}:{identifier}": url
        for kind, identifiers in wanted.items()
        for identifier, url in _RESOLVERS[kind](identifiers).items()
    }


@register_audit_target("operation")
def _operation_urls(identifiers: set[str]) -> dict[str, str]:
    ids = set()
    for identifier in identifiers:
        try:
            ids.add(uuid.UUID(identifier))
        except ValueError:
            continue
    found = Operation.objects.filter(id__in=ids).values_list("id", flat=True)
    return {str(pk): reverse("operation-detail", args=[pk]) for pk in found}


@register_audit_target("tenant")
def _tenant_urls(identifiers: set[str]) -> dict[str, str]:
    found = Tenant.objects.filter(slug__in=identifiers).values_list("slug", flat=True)
    return {slug: reverse("tenant-detail", args=[slug]) for slug in found}


def audit_events_visible(*, staff: bool) -> QuerySet[AuditEvent]:
    """The whole log is for staff; tenants have no audit page."""
    qs = AuditEvent.objects.select_related("tenant", "actor")
    return qs if staff else qs.none()


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def audit_events_filtered(
    qs: QuerySet[AuditEvent],
    *,
    actor: str = "",
    tenant: str = "",
    action: str = "",
    target: str = "",
    since: date | None = None,
    until: date | None = None,
) -> QuerySet[AuditEvent]:
    """Empty filters are no filter. ACTION matches from its start ("site." finds every site event);
    SINCE and UNTIL are days, both included."""
    if actor:
        qs = qs.filter(Q(actor_label__icontains=actor) | Q(actor__email__icontains=actor))
    if tenant:
        qs = qs.filter(tenant__slug__iexact=tenant)
    if action:
        qs = qs.filter(action__istartswith=action)
    if target:
        qs = qs.filter(target__icontains=target)
    if since:
        qs = qs.filter(created_at__gte=_day_start(since))
    if until:
        qs = qs.filter(created_at__lt=_day_start(until + timedelta(days=1)))
    return qs
