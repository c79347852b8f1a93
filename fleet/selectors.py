"""Reads of the fleet: capacity and allocation."""

from dataclasses import dataclass

from django.db.models import Count, F, Q, QuerySet

from fleet.models import Vps


def vps_visible(*, staff: bool) -> QuerySet[Vps]:
    return Vps.objects.all() if staff else Vps.objects.none()


def _with_site_counts(qs: QuerySet[Vps]) -> QuerySet[Vps]:
    # Sites that are gone no longer take a slot.
    return qs.annotate(site_count=Count("sites", filter=~Q(sites__status="deleted"), distinct=True))


def vps_with_capacity(*, tenant=None) -> QuerySet[Vps]:
    """Active VPSes that can take one more site, most free capacity first.

    Tenants whose tier has dedicated servers use their own VPS; everyone else shares."""
    qs = _with_site_counts(Vps.objects.filter(status=Vps.Status.ACTIVE))
    if tenant is not None and tenant.limits.dedicated_vps and Vps.objects.filter(tenant=tenant).exists():
        qs = qs.filter(kind=Vps.Kind.DEDICATED, tenant=tenant)
    else:
        qs = qs.filter(kind=Vps.Kind.SHARED)
    return (
        qs.filter(site_count__lt=F("max_sites"))
        .annotate(free=F("max_sites") - F("site_count"))
        .order_by("-free", "name")
    )


def vps_allocate(*, tenant=None) -> Vps | None:
    return vps_with_capacity(tenant=tenant).first()


@dataclass(frozen=True)
class Capacity:
    used: int
    total: int

    @property
    def ratio(self) -> float:
        return self.used / self.total if self.total else 1.0


def shared_fleet_capacity() -> Capacity:
    rows = _with_site_counts(Vps.objects.filter(status=Vps.Status.ACTIVE, kind=Vps.Kind.SHARED))
    used = total = 0
    for vps in rows:
        used += vps.site_count
        total += vps.max_sites
    return Capacity(used=used, total=total)


def vps_site_count(vps: Vps) -> int:
    return vps.sites.exclude(status="deleted").count() if hasattr(vps, "sites") else 0
