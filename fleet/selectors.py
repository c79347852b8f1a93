"""Reads of the fleet: capacity and allocation, cloud accounts and what their clouds offer."""

import hashlib
from dataclasses import dataclass, field, replace

from django.core.cache import cache
from django.db.models import Count, F, Q, QuerySet

from fleet.models import MariaDBMonitorAccount, ProviderCredential, Vps
from fleet.providers import PROVIDERS, ProviderError, get_provider
from fleet.providers.base import DISTROS, CatalogueEntry

CATALOGUE_SECONDS = 300  # clouds change their catalogues rarely; a page view should not wait on them
CATALOGUE_TIMEOUT = 5.0


def vps_visible(*, staff: bool) -> QuerySet[Vps]:
    return Vps.objects.all() if staff else Vps.objects.none()


def _with_site_counts(qs: QuerySet[Vps]) -> QuerySet[Vps]:
    # Sites that are gone no longer take a slot.
    return qs.annotate(site_count=Count("sites", filter=~Q(sites__status="deleted"), distinct=True))


def vps_with_capacity(*, tenant=None) -> QuerySet[Vps]:
    """Active VPSes that can take one more site, most free capacity first.

    Tenants whose tier has dedicated servers use their own VPS; everyone else shares."""
    qs = _with_site_counts(Vps.objects.filter(status=Vps.Status.ACTIVE, cordoned=False))
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
    """Sites on the shared VPSes that take new ones, against their slots: a cordoned VPS is left
    out entirely, so auto-grow sees the headroom that new sites can really use."""
    rows = _with_site_counts(
        Vps.objects.filter(status=Vps.Status.ACTIVE, kind=Vps.Kind.SHARED, cordoned=False)
    )
    used = total = 0
    for vps in rows:
        used += vps.site_count
        total += vps.max_sites
    return Capacity(used=used, total=total)


def vps_site_count(vps: Vps) -> int:
    return vps.sites.exclude(status="deleted").count() if hasattr(vps, "sites") else 0


def vps_name_taken(name: str) -> bool:
    return Vps.objects.filter(name=name).exists()


def vps_ids_with_mariadb_monitoring() -> set[int]:
    """VPSes whose bootstrap created the mysqld exporter's MariaDB account (and so enabled it)."""
    return set(MariaDBMonitorAccount.objects.values_list("vps_id", flat=True))


# --- cloud accounts ---------------------------------------------------------------------------------


def cloud_provider_names() -> list[str]:
    """The clouds CHOM can create servers at through their API (not `manual`, not `local`)."""
    return sorted(name for name, cls in PROVIDERS.items() if cls.distro_images)


def cloud_accounts(*, staff: bool) -> QuerySet[ProviderCredential]:
    return ProviderCredential.objects.order_by("provider") if staff else ProviderCredential.objects.none()


def cloud_account_get(*, staff: bool, provider: str) -> ProviderCredential | None:
    return cloud_accounts(staff=staff).filter(provider=provider).first()


@dataclass(frozen=True)
class CloudCatalogue:
    """What a cloud account offers (from the cloud's API) and what CHOM asks for by default."""

    provider: str
    default_region: str
    default_size: str
    distro_images: dict[str, str]  # distribution label -> the cloud's image of it
    regions: list[CatalogueEntry] = field(default_factory=list)
    sizes: list[CatalogueEntry] = field(default_factory=list)
    images: list[CatalogueEntry] = field(default_factory=list)
    error: str = ""  # why the lists are empty: the cloud refused or could not be reached

    def offers(self, kind: str, slug: str) -> bool:
        """False only when the cloud listed its KIND ("regions", "sizes") and SLUG is not among them."""
        entries = getattr(self, kind)
        return self.error != "" or not entries or any(e.slug == slug for e in entries)


def cloud_catalogue(credential: ProviderCredential) -> CloudCatalogue:
    """Regions, sizes and images of CREDENTIAL's cloud, cached for CATALOGUE_SECONDS per cloud and
    API address. A failure is reported in `error` (and not cached), never raised."""
    provider = get_provider(
        credential.provider,
        token=credential.token,
        base_url=credential.base_url or None,
        timeout=CATALOGUE_TIMEOUT,
    )
    provider.max_retries = 0  # a page view reports the failure; the operator reloads
    defaults = CloudCatalogue(
        provider=credential.provider,
        default_region=provider.default_region,
        default_size=provider.default_size,
        distro_images={label: provider.default_image(distro) for distro, label in DISTROS.items()},
    )
    url = hashlib.sha256(provider.base_url.encode()).hexdigest()[:16]
    key = f"fleet:catalogue:{credential.provider}:{url}"
    lists = cache.get(key)
    if lists is None:
        try:
            lists = {"regions": provider.regions(), "sizes": provider.sizes(), "images": provider.images()}
        except ProviderError as exc:
            return replace(defaults, error=f"Could not list the catalogue: {exc}")
        except (KeyError, TypeError, AttributeError):  # a base URL that is not this cloud's API
            message = f"{credential.provider} answered at {provider.base_url} in an unexpected shape"
            return replace(defaults, error=message)
        cache.set(key, lists, CATALOGUE_SECONDS)
    return replace(defaults, **lists)
