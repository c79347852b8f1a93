"""DigitalOcean API v2: https://docs.digitalocean.com/reference/api/."""

from __future__ import annotations

from typing import Any

from .base import (
    CHOM_TAG,
    CatalogueEntry,
    Provider,
    ProviderError,
    ProviderServer,
    ServerSpec,
    ServerStatus,
    public_key_fingerprint,
    ssh_key_name,
)

# "archive" is a destroyed droplet whose record DigitalOcean still returns.
_STATUSES: dict[str, ServerStatus] = {
    "new": "provisioning",
    "active": "running",
    "off": "off",
    "archive": "gone",
}


class DigitalOceanProvider(Provider):
    name = "digitalocean"
    default_base_url = "https://api.digitalocean.com/v2"
    default_region = "fra1"
    default_size = "s-1vcpu-2gb"
    distro_images = {"debian-12": "debian-12-x64", "ubuntu-24.04": "ubuntu-24-04-x64"}

    def create(self, spec: ServerSpec) -> ProviderServer:
        body: dict[str, Any] = {
            "name": spec.name,
            "region": spec.region,
            "size": spec.size,
            "image": spec.image,
            "ssh_keys": [self._ssh_key_id(spec.ssh_public_key)],
            "tags": [CHOM_TAG],
        }
        if spec.user_data:
            body["user_data"] = spec.user_data
        payload = self._request("POST", "/droplets", json=body)
        return _server(payload["droplet"])

    def get(self, provider_id: str) -> ProviderServer:
        payload = self._request("GET", f"/droplets/{self._segment(provider_id)}", missing_ok=True)
        if payload is None:
            return ProviderServer(provider_id=provider_id, status="gone", ip_address=None)
        return _server(payload["droplet"])

    def destroy(self, provider_id: str) -> None:
        self._request("DELETE", f"/droplets/{self._segment(provider_id)}", missing_ok=True)

    def account(self) -> str:
        return str(self._request("GET", "/account")["account"].get("email", ""))

    def regions(self) -> list[CatalogueEntry]:
        found = self._request("GET", "/regions", params={"per_page": 200})["regions"]
        return [
            CatalogueEntry(r["slug"], r.get("name", r["slug"])) for r in found if r.get("available", True)
        ]

    def sizes(self) -> list[CatalogueEntry]:
        found = self._request("GET", "/sizes", params={"per_page": 200})["sizes"]
        return [
            CatalogueEntry(s["slug"], s.get("description") or s["slug"])
            for s in found
            if s.get("available", True)
        ]

    def images(self) -> list[CatalogueEntry]:
        params = {"type": "distribution", "per_page": 200}
        found = self._request("GET", "/images", params=params)["images"]
        return [CatalogueEntry(i["slug"], i.get("name") or i["slug"]) for i in found if i.get("slug")]

    def _ssh_key_id(self, public_key: str) -> int:
        body = {"name": ssh_key_name(public_key), "public_key": public_key.strip()}
        try:
            payload = self._request("POST", "/account/keys", json=body)
        except ProviderError as exc:
            # 422 is how DigitalOcean says "this key is already on the account".
            existing = self._existing_ssh_key(public_key) if exc.status == 422 else None
            if existing is None:
                raise
            payload = existing
        return payload["ssh_key"]["id"]

    def _existing_ssh_key(self, public_key: str) -> Any:
        fingerprint = self._segment(public_key_fingerprint(public_key))
        return self._request("GET", f"/account/keys/{fingerprint}", missing_ok=True)

    def _error_detail(self, payload: Any) -> str | None:
        if isinstance(payload, dict) and payload.get("message"):
            return str(payload["message"])
        return None


def _server(droplet: dict[str, Any]) -> ProviderServer:
    return ProviderServer(
        provider_id=str(droplet["id"]),
        status=_STATUSES.get(droplet.get("status", ""), "provisioning"),
        ip_address=_public_ipv4(droplet),
    )


def _public_ipv4(droplet: dict[str, Any]) -> str | None:
    for network in droplet.get("networks", {}).get("v4", []):
        if network.get("type") == "public":
            return network.get("ip_address")
    return None
