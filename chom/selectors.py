"""Reads of the core. Every function takes the tenant (or a staff flag) and scopes its queryset."""

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from chom.models import ApiToken, AuditEvent, Membership, Operation, Tenant
from chom.tiers import is_over


def operations_visible(*, tenant: Tenant | None, staff: bool = False) -> QuerySet[Operation]:
    qs = Operation.objects.all()
    if not staff:
        qs = qs.filter(tenant=tenant) if tenant is not None else qs.none()
    return qs.prefetch_related("log_entries")


def tokens_visible(*, tenant: Tenant | None, user) -> QuerySet[ApiToken]:
    """A tenant's tokens for its members; a staff user's own platform tokens otherwise."""
    if tenant is None:
        return ApiToken.objects.filter(tenant=None, user=user, revoked_at=None)
    return ApiToken.objects.filter(tenant=tenant, revoked_at=None).select_related("user")


def tokens_of_user(*, user) -> QuerySet[ApiToken]:
    """A person's own usable-or-expired, unrevoked tokens, in every tenant (and platform ones)."""
    return (
        ApiToken.objects.filter(user=user, revoked_at=None).select_related("tenant").order_by("-created_at")
    )


def memberships_of_user(*, user) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__slug")


def tenants_search(*, staff: bool, query: str = "") -> QuerySet[Tenant]:
    """Every tenant for staff (nobody else lists tenants), matching QUERY in the slug, the name or a
    member's email."""
    if not staff:
        return Tenant.objects.none()
    qs = Tenant.objects.annotate(member_count=Count("memberships", distinct=True)).order_by("slug")
    query = query.strip()
    if query:
        match = (
            Q(slug__icontains=query) | Q(name__icontains=query) | Q(memberships__user__email__icontains=query)
        )
        qs = qs.filter(match).distinct()
    return qs


def tenant_get(*, slug: str, staff: bool) -> Tenant | None:
    return tenants_search(staff=staff).filter(slug=slug).first()


def tenant_slug_taken(slug: str) -> bool:
    return Tenant.objects.filter(slug=slug).exists()


def tenant_members(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user", "tenant").order_by("user__email")


def audit_events_of_tenant(*, tenant: Tenant, limit: int = 20) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(tenant=tenant).select_related("actor")[:limit])


USAGE_COUNTERS: dict = {}


def register_usage(name: str):
    """Apps add what they meter (sites, backup storage...) without the core importing them."""

    def decorator(fn):
        USAGE_COUNTERS[name] = fn
        return fn

    return decorator


def tenant_usage(*, tenant: Tenant) -> dict:
    usage = {name: fn(tenant) for name, fn in USAGE_COUNTERS.items()}
    usage["api_tokens"] = ApiToken.objects.filter(tenant=tenant, revoked_at=None).count()
    usage["operations_running"] = Operation.objects.filter(
        tenant=tenant, status=Operation.Status.RUNNING
    ).count()
    return usage


@dataclass(frozen=True)
class UsageRow:
    name: str
    used: int | float
    limit: int | None = None  # None: not limited by the tier

    @property
    def over(self) -> bool:
        return self.limit is not None and is_over(count=self.used, limit=self.limit)


_LIMITED = {"sites": "max_sites"}


def tenant_usage_against_limits(*, tenant: Tenant) -> list[UsageRow]:
    """What the tenant uses, each next to its tier's limit where the tier sets one."""
    limits = tenant.limits
    usage = tenant_usage(tenant=tenant)
    rows = [
        UsageRow(name, used, getattr(limits, _LIMITED[name]) if name in _LIMITED else None)
        for name, used in usage.items()
        if name != "operations_running"
    ]
    pending = Operation.objects.filter(
        tenant=tenant,
        requested_by_tenant=True,
        status__in=[Operation.Status.QUEUED, Operation.Status.RUNNING],
    ).count()
    rows.append(UsageRow("operations queued or running", pending, limits.max_pending_operations))
    return rows
