"""Disposable test VPSes on CHOM's own machine (systemd-nspawn + network namespace).

For `make demo` and the e2e suite only: refused unless explicitly enabled (CHOM_LOCAL_PROVIDER=1),
never by production settings.
"""

from __future__ import annotations

import fcntl
import ipaddress
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet import localfleet

from .base import Provider, ProviderError, ProviderServer, ServerSpec


class LocalProvider(Provider):
    name = "local"

    def __init__(self, *, base_dir: str | Path, bridge: str, subnet: str, enabled: bool = False, **_: object):
        super().__init__()
        if not enabled:
            raise ProviderError("the local provider is disabled (set CHOM_LOCAL_PROVIDER=1)", permanent=True)
        self.base_dir, self.bridge, self.subnet = Path(base_dir), bridge, subnet

    def _workdir(self, provider_id: str) -> Path:
        return self.base_dir / provider_id

    def _used_ips(self) -> set[str]:
        used = set()
        for workdir in self.base_dir.glob("*"):
            vps = localfleet.vps_load(workdir)
            if vps:
                used.add(vps.ip)
        return used

    def _free_ip(self) -> str:
        used = self._used_ips()
        for host in range(2, 255):
            ip = f"{self.subnet}.{host}"
            if ip not in used:
                return str(ipaddress.ip_address(ip))
        raise ProviderError(f"no free address left in {self.subnet}.0/24", permanent=True)

    def create(self, spec: ServerSpec) -> ProviderServer:
        ok, why = localfleet.host_supports_fleet()
        if not ok:
            raise ProviderError(f"this machine cannot run local VPSes: {why}", permanent=True)
        workdir = self._workdir(spec.name)
        existing = localfleet.vps_load(workdir)
        if existing and localfleet.vps_is_running(existing):
            return ProviderServer(provider_id=spec.name, status="running", ip_address=existing.ip)
        if existing:
            localfleet.vps_destroy(existing)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        network = localfleet.network_up(self.bridge, self.subnet)
        # Two creations at once would both pick the same free address: one at a time (~1 s each).
        with open(self.base_dir / ".allocate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                vps = localfleet.vps_create(
                    name=spec.name,
                    ip=self._free_ip(),
                    network=network,
                    authorized_keys=spec.ssh_public_key,
                    workdir=workdir,
                    host_key_private=_new_host_key(),
                )
            except (localfleet.LocalFleetError, OSError, ValueError) as exc:
                raise ProviderError(f"local VPS {spec.name} did not boot: {exc}", permanent=False) from exc
        return ProviderServer(provider_id=spec.name, status="running", ip_address=vps.ip)

    def get(self, provider_id: str) -> ProviderServer:
        vps = localfleet.vps_load(self._workdir(provider_id))
        if vps is None:
            return ProviderServer(provider_id=provider_id, status="gone", ip_address=None)
        status = "running" if localfleet.vps_is_running(vps) else "off"
        return ProviderServer(provider_id=provider_id, status=status, ip_address=vps.ip)

    def destroy(self, provider_id: str) -> None:
        vps = localfleet.vps_load(self._workdir(provider_id))
        if vps is not None:
            localfleet.vps_destroy(vps)


def _new_host_key() -> str:
    """Each local VPS gets its own host key, as a real server would."""
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode()
    )
