"""An existing server: the admin gives its address and installs CHOM's public key."""

from __future__ import annotations

from .base import Provider, ProviderError, ProviderServer, ServerSpec


class ManualProvider(Provider):
    name = "manual"
    requires_address = True

    def create(self, spec: ServerSpec) -> ProviderServer:
        if not spec.ip_address:
            raise ProviderError("a manual server needs its IP address", permanent=True)
        return ProviderServer(provider_id=spec.name, status="running", ip_address=spec.ip_address)

    def get(self, provider_id: str) -> ProviderServer:
        return ProviderServer(provider_id=provider_id, status="running", ip_address=None)

    def destroy(self, provider_id: str) -> None:
        """CHOM never deletes a server it did not create; it only forgets it."""
