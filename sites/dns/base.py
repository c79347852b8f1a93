"""The DNS provider strategy: find the zone that holds a name, create and delete TXT records in
it. CHOM uses it for ACME DNS-01 challenges (`_acme-challenge.<name>` TXT records), so a
tenant's wildcard names get certificates without the DNS token ever reaching a VPS.

Each provider is one subclass in its own module; every failure is a `DnsProviderError` whose
`permanent` flag says whether the same call can succeed later."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from chom.errors import ExternalServiceError

_MIN_MASKED_TOKEN = 8


class DnsProviderError(ExternalServiceError):
    """A DNS provider's API failed; `permanent` when retrying the same call cannot help."""

    service = "DNS provider"


@dataclass(frozen=True)
class TxtRecord:
    """A TXT record CHOM created: enough to delete it again."""

    zone: str  # the zone's name (example.com)
    zone_id: str  # the provider's id of the zone (Cloudflare) or its name (DigitalOcean)
    record_id: str
    name: str  # fully qualified, no trailing dot
    value: str


def candidate_zones(name: str) -> list[str]:
    """NAME and each parent with at least two labels, longest first: the zone holding a name is
    the longest suffix the account has (a.b.example.com may live in b.example.com)."""
    labels = name.rstrip(".").lower().split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


class DnsProvider(ABC):
    name: ClassVar[str]
    default_base_url: ClassVar[str]
    # ACME CAs query the authoritative servers, but a short TTL keeps resolvers from caching a
    # stale challenge value across retries.
    txt_ttl: ClassVar[int] = 60

    def __init__(self, *, token: str, base_url: str | None = None, timeout: float = 10.0) -> None:
        self._token = token
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={self.base_url!r}>"

    @abstractmethod
    def verify(self) -> None:
        """One cheap authenticated call: raises DnsProviderError (permanent) on a bad token."""

    @abstractmethod
    def find_zone(self, name: str) -> tuple[str, str]:
        """(zone name, zone id) of the zone in this account that holds NAME."""

    @abstractmethod
    def create_txt(self, *, zone: str, zone_id: str, name: str, value: str) -> TxtRecord: ...

    @abstractmethod
    def delete_txt(self, record: TxtRecord) -> None:
        """Delete RECORD; one that is already gone is no error."""

    def add_txt(self, name: str, value: str) -> TxtRecord:
        zone, zone_id = self.find_zone(name)
        return self.create_txt(zone=zone, zone_id=zone_id, name=name.rstrip(".").lower(), value=value)

    # --- HTTP -------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    def _request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> requests.Response:
        try:
            return self.session.request(
                method,
                self.base_url + path,
                json=json,
                params=params,
                headers=self._headers(),
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise self._error(f"{method} {path} failed: {type(exc).__name__}", permanent=False) from exc

    def _fail(self, method: str, path: str, response: requests.Response) -> DnsProviderError:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        detail = self._error_detail(payload) or response.reason or "no details"
        status = response.status_code
        permanent = status < 500 and status not in (408, 429)
        return self._error(f"{method} {path} -> HTTP {status}: {detail}", permanent=permanent, status=status)

    def _error_detail(self, payload: Any) -> str | None:
        return None

    def _error(self, message: str, *, permanent: bool, status: int | None = None) -> DnsProviderError:
        if len(self._token) >= _MIN_MASKED_TOKEN:
            message = message.replace(self._token, "***")
        return DnsProviderError(f"{self.name}: {message}", permanent=permanent, status=status)

    @staticmethod
    def _segment(value: str) -> str:
        return quote(str(value), safe="")

    @staticmethod
    def _json(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None
