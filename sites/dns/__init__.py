"""DNS providers as strategies (like `fleet.providers`): adding one means adding one module to
`DNS_PROVIDERS`. `dns_provider_for(account)` builds the client for a tenant's DnsAccount."""

from __future__ import annotations

from django.conf import settings

from .base import DnsProvider, DnsProviderError, TxtRecord, candidate_zones
from .cloudflare import CloudflareDns
from .digitalocean import DigitalOceanDns

DNS_PROVIDERS: dict[str, type[DnsProvider]] = {cls.name: cls for cls in (DigitalOceanDns, CloudflareDns)}


def get_dns_provider(name: str, *, token: str, base_url: str | None = None) -> DnsProvider:
    """The client for provider NAME; its API URL from DNS_PROVIDER_API_URLS unless BASE_URL says
    otherwise (the local fakes in tests and make demo)."""
    try:
        cls = DNS_PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(DNS_PROVIDERS))
        raise DnsProviderError(f"unknown DNS provider {name!r} (known: {known})", permanent=True) from None
    url = base_url or settings.DNS_PROVIDER_API_URLS.get(name) or None
    return cls(token=token, base_url=url, timeout=settings.DNS_PROVIDER_TIMEOUT_SECONDS)


def dns_provider_for(account) -> DnsProvider:
    return get_dns_provider(account.provider, token=account.token)


__all__ = [
    "DNS_PROVIDERS",
    "DnsProvider",
    "DnsProviderError",
    "TxtRecord",
    "candidate_zones",
    "dns_provider_for",
    "get_dns_provider",
]
