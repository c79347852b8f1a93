"""Cloud providers as strategies: adding a cloud means adding one module to `PROVIDERS`."""

from __future__ import annotations

from typing import Any

from .base import Provider, ProviderError, ProviderServer, ServerSpec
from .digitalocean import DigitalOceanProvider
from .linode import LinodeProvider
from .local import LocalProvider
from .manual import ManualProvider
from .vultr import VultrProvider

PROVIDERS: dict[str, type[Provider]] = {
    cls.name: cls
    for cls in (ManualProvider, LocalProvider, DigitalOceanProvider, LinodeProvider, VultrProvider)
}


def get_provider(name: str, **config: Any) -> Provider:
    try:
        provider_class = PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ProviderError(f"unknown provider {name!r} (known: {known})", permanent=True) from None
    return provider_class(**config)


__all__ = [
    "PROVIDERS",
    "Provider",
    "ProviderError",
    "ProviderServer",
    "ServerSpec",
    "get_provider",
]
