"""Reads of sites, always scoped by tenant (staff see everything)."""

from django.db.models import Count, Prefetch, Q, QuerySet

from chom import tiers
from sites.models import Site, SiteHostname


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


def tenant_may_add_site(tenant) -> bool:
    """Room for one more site within the tenant's tier."""
    return tiers.may_add(count=tenant_site_count(tenant), limit=tenant.limits.max_sites)


def tenant_over_limits(tenant) -> list[str]:
    """What the tenant uses beyond its tier, in words; empty when within limits.

    Site creation refuses new sites while this is not empty (after a downgrade); billing shows it.
    Nothing is ever deleted for it.
    """
    limits = tenant.limits
    live_sites = Site.objects.filter(tenant=tenant).exclude(status=Site.Status.DELETED)
    problems = []
    count = live_sites.count()
    if tiers.is_over(count=count, limit=limits.max_sites):
        problems.append(f"sites: {count} in use, the {tenant.tier} tier allows {limits.max_sites}")
    by_type = live_sites.exclude(type__in=limits.site_types).values("type").annotate(n=Count("id"))
    for row in by_type.order_by("type"):
        problems.append(
            f"site type {row['type']}: {row['n']} site(s), not included in the {tenant.tier} tier"
        )
    if not limits.dedicated_vps and tenant.dedicated_vps.exists():
        problems.append(f"dedicated VPS: not included in the {tenant.tier} tier")
    return problems


def domain_taken(domain: str) -> bool:
    """Hosted by anyone, as a primary domain or an alias (the hostname table holds live sites)."""
    return SiteHostname.objects.filter(hostname=domain).exists()


def sites_serving_on_vps(*, vps_name: str) -> QuerySet[Site]:
    """Every tenant's sites that visitors should reach on the VPS named VPS_NAME (platform-wide:
    for alerts about the server itself). Suspended and going-away sites are not expected to serve."""
    return Site.objects.filter(
        vps__name=vps_name, status__in=[Site.Status.ACTIVE, Site.Status.DEPLOYING], suspended_reason=""
    ).select_related("tenant")


def sites_serving() -> QuerySet[Site]:
    """Every tenant's sites that visitors should reach now, platform-wide (for uptime probes):
    deployed at least once, not suspended or going away, on a VPS with an address."""
    return (
        Site.objects.filter(status__in=[Site.Status.ACTIVE, Site.Status.DEPLOYING], suspended_reason="")
        .exclude(current_release="")
        .exclude(vps__ip_address=None)
        .select_related("vps", "tenant")
        .order_by("domain")
    )


def tenant_dns_accounts(tenant):
    """TENANT's DNS provider accounts (DNS-01 certificates), by name."""
    from sites.models import DnsAccount

    return DnsAccount.objects.filter(tenant=tenant).order_by("name", "id")


def dns_accounts_for_staff(*, tenant=None):
    """Every tenant's DNS accounts (or TENANT's), each with `live_sites`: the sites that answer
    their DNS-01 challenges through it."""
    from sites.models import DnsAccount

    live = Site.objects.exclude(status=Site.Status.DELETED).order_by("domain").only("domain", "dns_account")
    qs = DnsAccount.objects.select_related("tenant").order_by("tenant__slug", "name", "id")
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    return qs.prefetch_related(Prefetch("sites", queryset=live, to_attr="live_sites"))


def wildcard_conflict(*, name: str, tenant) -> str | None:
    """A hostname of another tenant's live site that NAME would overlap in nginx, or None.
    `*.example.com` serves every name below example.com that no exact server_name claims, so
    on a shared fleet a wildcard may only be claimed when no other tenant hosts a name below it,
    and nobody else may add a name below another tenant's wildcard (their own names are fine:
    an exact name wins in nginx)."""
    labels = name.split(".")
    covering = ["*." + ".".join(labels[i:]) for i in range(1, len(labels) - 1)]
    others = SiteHostname.objects.exclude(site__tenant=tenant)
    hit = others.filter(hostname__in=[c for c in covering if c != name]).values_list("hostname", flat=True)
    found = hit.first()
    if found is None and name.startswith("*."):
        below = others.filter(hostname__endswith=name[1:]).values_list("hostname", flat=True)
        found = below.first()
    return found
