"""Reads of sites, always scoped by tenant (staff see everything)."""

from django.db.models import Q, QuerySet

from sites.models import Site


def sites_visible(*, tenant, staff: bool = False) -> QuerySet[Site]:
    qs = Site.objects.exclude(status=Site.Status.DELETED).select_related("vps", "tenant")
    if staff:
        return qs
    return qs.filter(tenant=tenant) if tenant is not None else qs.none()


def sites_filtered(
    qs: QuerySet[Site], *, status: str = "", type: str = "", search: str = ""
) -> QuerySet[Site]:
    if status:
        qs = qs.filter(status=status)
    if type:
        qs = qs.filter(type=type)
    if search:
        qs = qs.filter(Q(domain__icontains=search))
    return qs


def tenant_site_count(tenant) -> int:
    return Site.objects.filter(tenant=tenant).exclude(status=Site.Status.DELETED).count()


def domain_taken(domain: str) -> bool:
    """Hosted by anyone, as a primary domain or an alias."""
    live = Site.objects.exclude(status=Site.Status.DELETED)
    return live.filter(domain=domain).exists() or any(domain in s.aliases for s in live.only("aliases"))
