"""Vultr API v2: https://www.vultr.com/api/."""

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
    b64,
    public_key_fingerprint,
    ssh_key_name,
)

# Vultr reports this until it has assigned the instance an address.
_NO_IP = "0.0.0.0"  # noqa: S104 - a value Vultr returns, not an address we bind to


class VultrProvider(Provider):
    name = "vultr"
    default_base_url = "https://api.vultr.com/v2"
    default_region = "fra"
    default_size = "vc2-1c-2gb"
    # Vultr's stock systems are numeric os_ids: 2136 Debian 12 x64, 2284 Ubuntu 24.04 LTS x64.
    distro_images = {"debian-12": "2136", "ubuntu-24.04": "2284"}

    def create(self, spec: ServerSpec) -> ProviderServer:
        body: dict[str, Any] = {
            "region": spec.region,
            "plan": spec.size,
            "label": spec.name,
            "hostname": spec.name,
            "sshkey_id": [self._ssh_key_id(spec.ssh_public_key)],
            "tags": [CHOM_TAG],
            **_image_field(spec.image),
        }
        if spec.user_data:
            body["user_data"] = b64(spec.user_data)
        payload = self._request("POST", "/instances", json=body)
        return _server(payload["instance"])

    def get(self, provider_id: str) -> ProviderServer:
        payload = self._request("GET", f"/instances/{self._segment(provider_id)}", missing_ok=True)
        if payload is None:
            return ProviderServer(provider_id=provider_id, status="gone", ip_address=None)
        return _server(payload["instance"])

    def destroy(self, provider_id: str) -> None:
        self._request("DELETE", f"/instances/{self._segment(provider_id)}", missing_ok=True)

    def account(self) -> str:
        return str(self._request("GET", "/account")["account"].get("email", ""))

    def regions(self) -> list[CatalogueEntry]:
        found = self._list("/regions", "regions")
        return [CatalogueEntry(r["id"], f"{r.get('city', r['id'])} ({r['id']})") for r in found]

    def sizes(self) -> list[CatalogueEntry]:
        return [CatalogueEntry(p["id"], p["id"]) for p in self._list("/plans", "plans")]

    def images(self) -> list[CatalogueEntry]:
        return [CatalogueEntry(str(o["id"]), o.get("name") or str(o["id"])) for o in self._list("/os", "os")]

    def _list(self, path: str, key: str) -> list[dict[str, Any]]:
        """Every page of a Vultr collection (cursor in meta.links.next)."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"per_page": 500}
        for _ in range(50):
            payload = self._request("GET", path, params=params)
            items += payload.get(key, [])
            cursor = payload.get("meta", {}).get("links", {}).get("next")
            if not cursor or cursor == params.get("cursor"):
                break
            params["cursor"] = cursor
        return items

    def _ssh_key_id(self, public_key: str) -> str:
        # Vultr accepts the same key twice, so look before adding to avoid piling up copies.
        existing = self._find_ssh_key(public_key)
        if existing is not None:
            return existing
        body = {"name": ssh_key_name(public_key), "ssh_key": public_key.strip()}
        return self._request("POST", "/ssh-keys", json=body)["ssh_key"]["id"]

    def _find_ssh_key(self, public_key: str) -> str | None:
        wanted = public_key_fingerprint(public_key)
        params: dict[str, Any] = {"per_page": 500}
        while True:
            page = self._request("GET", "/ssh-keys", params=params)
            for key in page.get("ssh_keys", []):
                if _fingerprint_or_none(key.get("ssh_key", "")) == wanted:
                    return key["id"]
            cursor = page.get("meta", {}).get("links", {}).get("next")
            if not cursor or cursor == params.get("cursor"):
                return None
            params["cursor"] = cursor

    def _error_detail(self, payload: Any) -> str | None:
        if isinstance(payload, dict) and payload.get("error"):
            return str(payload["error"])
        return None


def _image_field(image: str) -> dict[str, Any]:
    """Vultr's stock operating systems are numeric `os_id`s; anything else is an `image_id`."""
    return {"os_id": int(image)} if image.isdigit() else {"image_id": image}


def _fingerprint_or_none(public_key: str) -> str | None:
    try:
        return public_key_fingerprint(public_key)
    except ProviderError:
        return None


def _server(instance: dict[str, Any]) -> ProviderServer:
    ip = instance.get("main_ip") or None
    return ProviderServer(
        provider_id=str(instance["id"]),
        status=_status(instance),
        ip_address=None if ip == _NO_IP else ip,
    )


def _status(instance: dict[str, Any]) -> ServerStatus:
    if instance.get("status") == "suspended" or instance.get("power_status") == "stopped":
        return "off"
    ready = instance.get("server_status") == "ok" and instance.get("power_status") == "running"
    return "running" if instance.get("status") == "active" and ready else "provisioning"
