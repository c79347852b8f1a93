"""The cloud `Provider` strategy and the HTTP plumbing its REST subclasses share.

Each cloud API is one subclass in its own module (VitoDeploy's `app/ServerProviders`). Every
failure surfaces as `ProviderError`, whose `permanent` flag tells the caller whether retrying
the same call later can help.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import requests
from urllib3.exceptions import NewConnectionError

from chom.errors import ExternalServiceError

logger = logging.getLogger(__name__)

ServerStatus = Literal["provisioning", "running", "off", "gone"]

CHOM_TAG = "chom"

# A POST that failed after reaching the server may already have created something (a billed
# VPS), so only these methods are retried when the outcome of a request is unknown.
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})

_MIN_MASKED_TOKEN = 8


class ProviderError(ExternalServiceError):
    """A cloud API failed; `permanent` when retrying the same call cannot help."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    region: str
    size: str
    image: str
    ssh_public_key: str
    user_data: str = ""
    # Only for providers that adopt an existing server (manual).
    ip_address: str | None = None


# The distributions CHOM bootstraps; a cloud's image for each is in its `distro_images`.
DISTROS = {"debian-12": "Debian 12", "ubuntu-24.04": "Ubuntu 24.04 LTS"}
DEFAULT_DISTRO = "debian-12"


@dataclass(frozen=True)
class CatalogueEntry:
    """A region, size or image a cloud offers: its slug in the cloud's API and a label."""

    slug: str
    label: str


@dataclass(frozen=True)
class ProviderServer:
    provider_id: str
    status: ServerStatus
    ip_address: str | None


class Provider(ABC):
    name: ClassVar[str]
    # True when CHOM adopts a server the admin already has (no API call creates it).
    requires_address: ClassVar[bool] = False
    default_base_url: ClassVar[str] = ""
    # Defaults when neither the VPS nor the cloud account names one: a small server in a common
    # region, and the cloud's image of each distribution CHOM supports (`DISTROS`).
    default_region: ClassVar[str] = ""
    default_size: ClassVar[str] = ""
    distro_images: ClassVar[dict[str, str]] = {}
    max_retries: ClassVar[int] = 3
    max_retry_sleep: ClassVar[float] = 30.0
    backoff_base: ClassVar[float] = 1.0

    def __init__(
        self,
        *,
        token: str = "",
        base_url: str | None = None,
        timeout: float = 10.0,
        poll_interval: float = 3.0,
        session: requests.Session | None = None,
    ) -> None:
        self._token = token
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.session = session or requests.Session()
        # Injectable so tests neither wait nor depend on the wall clock.
        self.sleep: Callable[[float], None] = time.sleep
        self.monotonic: Callable[[], float] = time.monotonic

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={self.base_url!r}>"

    @abstractmethod
    def create(self, spec: ServerSpec) -> ProviderServer: ...

    @abstractmethod
    def get(self, provider_id: str) -> ProviderServer:
        """Current state; a server the provider no longer knows is reported as "gone"."""

    @abstractmethod
    def destroy(self, provider_id: str) -> None:
        """Delete the server; deleting one that is already gone succeeds."""

    # --- the account and its catalogue (cloud accounts page) ------------------------------------

    def account(self) -> str:
        """Who the token belongs to: one call that fails (401 → ProviderError) on a bad token."""
        raise self._error("this provider has no account to check", permanent=True)

    def regions(self) -> list[CatalogueEntry]:
        return []

    def sizes(self) -> list[CatalogueEntry]:
        return []

    def images(self) -> list[CatalogueEntry]:
        return []

    def default_image(self, distro: str = DEFAULT_DISTRO) -> str:
        return self.distro_images.get(distro, "")

    def wait_until_running(self, provider_id: str, *, timeout: float = 300) -> ProviderServer:
        deadline = self.monotonic() + timeout
        while True:
            server = self.get(provider_id)
            if server.status == "running" and server.ip_address:
                return server
            if server.status == "gone":
                raise self._error(f"server {provider_id} disappeared while booting", permanent=True)
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                last = f"last status {server.status!r}"
                message = f"server {provider_id} not running after {timeout:g}s ({last})"
                raise self._error(message, permanent=False)
            self.sleep(min(self.poll_interval, remaining))

    # --- HTTP -------------------------------------------------------------------------------

    def _error_detail(self, payload: Any) -> str | None:
        """The provider's own explanation from an error response body, if it has one."""
        return None

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """Decoded JSON body (None when empty, or on 404 with `missing_ok`)."""
        attempt = 0
        while True:
            try:
                response = self._send(method, path, json=json, params=params)
            except requests.RequestException as exc:
                if attempt >= self.max_retries or not _may_retry_exception(method, exc):
                    raise self._error(
                        f"{method} {path} failed: {type(exc).__name__}", permanent=False
                    ) from exc
                self._pause(method, path, self._backoff(attempt), type(exc).__name__)
            else:
                if response.ok:
                    return self._decode(method, path, response)
                if missing_ok and response.status_code == 404:
                    return None
                delay = self._retry_delay(method, response, attempt)
                if delay is None or attempt >= self.max_retries:
                    raise self._response_error(method, path, response)
                self._pause(method, path, delay, f"HTTP {response.status_code}")
            attempt += 1

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
    ) -> requests.Response:
        return self.session.request(
            method,
            self.base_url + path,
            json=json,
            params=params,
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            timeout=self.timeout,
        )

    def _retry_delay(self, method: str, response: requests.Response, attempt: int) -> float | None:
        if response.status_code == 429:
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            delay = self._backoff(attempt) if retry_after is None else retry_after
            return min(delay, self.max_retry_sleep)
        if response.status_code >= 500 and method in _IDEMPOTENT_METHODS:
            return self._backoff(attempt)
        return None

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_base * 2**attempt, self.max_retry_sleep)

    def _pause(self, method: str, path: str, delay: float, reason: str) -> None:
        logger.warning("%s: %s %s: %s, retrying in %.1fs", self.name, method, path, reason, delay)
        self.sleep(delay)

    def _decode(self, method: str, path: str, response: requests.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise self._error(f"{method} {path} returned invalid JSON", permanent=False) from None

    def _response_error(self, method: str, path: str, response: requests.Response) -> ProviderError:
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        detail = self._error_detail(payload) or response.reason or "no details"
        permanent = status < 500 and status not in (408, 429)
        return self._error(f"{method} {path} -> HTTP {status}: {detail}", permanent=permanent, status=status)

    def _error(self, message: str, *, permanent: bool, status: int | None = None) -> ProviderError:
        # Real tokens are long; masking a toy one like "t" would garble every message.
        if len(self._token) >= _MIN_MASKED_TOKEN:
            message = message.replace(self._token, "***")
        return ProviderError(f"{self.name}: {message}", permanent=permanent, status=status)

    @staticmethod
    def _segment(value: str) -> str:
        """A caller-supplied id made safe to put into a URL path."""
        return quote(str(value), safe="")


def _may_retry_exception(method: str, exc: requests.RequestException) -> bool:
    if method in _IDEMPOTENT_METHODS:
        return isinstance(exc, requests.ConnectionError | requests.Timeout)
    return _never_sent(exc)


def _never_sent(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    # requests wraps "connection refused" in a plain ConnectionError; urllib3 marks it with
    # NewConnectionError, which means no byte of the request reached the server.
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def public_key_fingerprint(public_key: str) -> str:
    """The MD5 fingerprint ("aa:bb:…") clouds use to identify an OpenSSH public key."""
    parts = public_key.split()
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (IndexError, binascii.Error):
        raise ProviderError("ssh_public_key is not an OpenSSH public key", permanent=True) from None
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def ssh_key_name(public_key: str) -> str:
    return "chom-" + public_key_fingerprint(public_key).replace(":", "")[:12]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")
