"""Linode (Akamai) API v4: https://techdocs.akamai.com/linode-api/reference/api."""

from __future__ import annotations

import ipaddress
import secrets
import string
from typing import Any

from .base import CHOM_TAG, CatalogueEntry, Provider, ProviderServer, ServerSpec, ServerStatus, b64

_STATUSES: dict[str, ServerStatus] = {
    "running": "running",
    "offline": "off",
    "stopped": "off",
    "shutting_down": "off",
    "billing_suspension": "off",
    "deleting": "gone",
}

# Linode hands out private addresses from this block alongside the public one.
_PRIVATE_NETWORK = ipaddress.ip_network("192.168.128.0/17")

_PASSWORD_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "!@#%^*-_=+")


class LinodeProvider(Provider):
    name = "linode"
    default_base_url = "https://api.linode.com/v4"
    default_region = "eu-central"
    default_size = "g6-standard-1"
    distro_images = {"debian-12": "linode/debian12", "ubuntu-24.04": "linode/ubuntu24.04"}

    def create(self, spec: ServerSpec) -> ProviderServer:
        body: dict[str, Any] = {
            "label": spec.name,
            "region": spec.region,
            "type": spec.size,
            "image": spec.image,
            # Linode requires one when deploying an image; CHOM logs in with the SSH key only.
            "root_pass": _root_password(),
            "authorized_keys": [spec.ssh_public_key.strip()],
            "tags": [CHOM_TAG],
            "booted": True,
        }
        if spec.user_data:
            body["metadata"] = {"user_data": b64(spec.user_data)}
        return _server(self._request("POST", "/linode/instances", json=body))

    def get(self, provider_id: str) -> ProviderServer:
        path = f"/linode/instances/{self._segment(provider_id)}"
        payload = self._request("GET", path, missing_ok=True)
        if payload is None:
            return ProviderServer(provider_id=provider_id, status="gone", ip_address=None)
        return _server(payload)

    def destroy(self, provider_id: str) -> None:
        path = f"/linode/instances/{self._segment(provider_id)}"
        self._request("DELETE", path, missing_ok=True)

    def account(self) -> str:
        return str(self._request("GET", "/profile").get("email", ""))

    def regions(self) -> list[CatalogueEntry]:
        return [CatalogueEntry(r["id"], r.get("label") or r["id"]) for r in self._list("/regions")]

    def sizes(self) -> list[CatalogueEntry]:
        return [CatalogueEntry(t["id"], t.get("label") or t["id"]) for t in self._list("/linode/types")]

    def images(self) -> list[CatalogueEntry]:
        found = self._list("/images")
        return [CatalogueEntry(i["id"], i.get("label") or i["id"]) for i in found if i.get("is_public", True)]

    def _list(self, path: str) -> list[dict[str, Any]]:
        """Every page of a Linode collection ({"data", "page", "pages"})."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            payload = self._request("GET", path, params={"page": page, "page_size": 500})
            items += payload.get("data", [])
            if page >= int(payload.get("pages", 1)) or page >= 50:
                return items
            page += 1

    def _error_detail(self, payload: Any) -> str | None:
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if not errors:
            return None
        return "; ".join(_describe(error) for error in errors if isinstance(error, dict))


def _describe(error: dict[str, Any]) -> str:
    reason = str(error.get("reason", "unknown error"))
    return f"{error['field']}: {reason}" if error.get("field") else reason


def _server(instance: dict[str, Any]) -> ProviderServer:
    return ProviderServer(
        provider_id=str(instance["id"]),
        status=_STATUSES.get(instance.get("status", ""), "provisioning"),
        ip_address=_public_ipv4(instance.get("ipv4", [])),
    )


def _public_ipv4(addresses: list[str]) -> str | None:
    for address in addresses:
        if ipaddress.ip_address(address) not in _PRIVATE_NETWORK:
            return address
    return None


def _root_password(length: int = 32) -> str:
    alphabet = "".join(_PASSWORD_CLASSES)
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(char in chars for char in password) for chars in _PASSWORD_CLASSES):
            return password
