"""Reads of the core. Every function takes the tenant (or a staff flag) and scopes its queryset."""

from django.db.models import QuerySet

from chom.models import ApiToken, Operation, Tenant


def operations_visible(*, tenant: Tenant | None, staff: bool = False) -> QuerySet[Operation]:
    qs = Operation.objects.all()
    if not staff:
        qs = qs.filter(tenant=tenant) if tenant is not None else qs.none()
    return qs.prefetch_related("log_entries")


def tokens_visible(*, tenant: Tenant | None, user) -> QuerySet[ApiToken]:
    """A tenant's tokens for its members; a staff user's own platform tokens otherwise."""
    if tenant is None:
        return ApiToken.objects.filter(tenant=None, user=user, revoked_at=None)
    return ApiToken.objects.filter(tenant=tenant, revoked_at=None)


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
