"""Which repository URLs a site may deploy from. The VPS clones them as the site user, so a URL is
a request the tenant makes from inside our network: it may not reach loopback, link-local
(169.254.169.254, the cloud metadata service), private ranges or CHOM's own services.

- Literal IPs and the addresses a host name resolves to *now* are checked; a name that does not
  resolve is accepted (the clone then fails with git's own message; nothing was reached).
- REPOSITORY_ALLOWED_NETWORKS (CIDRs) lets an on-premise git server or the test fleet's bridge
  through. It never unblocks link-local addresses, nor the host:port of a service CHOM itself
  uses (database, Redis, its web address, S3, Prometheus, Alertmanager, Loki, Grafana).
- Passwords and tokens do not belong in URLs (they would be stored and logged): refused with a
  message; a user name alone (`git@`) is fine.
- SSH repositories (`ssh://[user@]host[:port]/path` and scp-like `user@host:path`, cloned with the
  site's deploy key) are judged by the same host:port rules, port 22 unless given.
"""

import ipaddress
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urlsplit

from django.conf import settings

DEFAULT_PORTS = {"http": 80, "https": 443, "git": 9418, "ssh": 22}
RESOLVE_TIMEOUT = 3.0
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="repo-dns")


# git's scp-like syntax (`git@github.com:owner/repo.git`): always with a user, so git never takes it
# for a local path; host and user never start with "-" (ssh would read an option).
SCP_LIKE_RE = re.compile(
    r"(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]{0,63})@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252})"
    r":(?P<path>[A-Za-z0-9._~+/][A-Za-z0-9._~+/-]{0,400})"
)


class RepositoryRefused(ValueError):
    """Why a repository URL may not be used, in words for the API's field error."""


def _resolve(host: str) -> list:
    try:
        infos = _resolver.submit(socket.getaddrinfo, host, None).result(timeout=RESOLVE_TIMEOUT)
    except (OSError, FutureTimeout, UnicodeError):
        return []
    return sorted({ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}, key=str)


def _addresses(host: str) -> list:
    try:
        found = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        found = _resolve(host)
    # ::ffff:127.0.0.1 is 127.0.0.1: judge the IPv4 address inside.
    return [a.ipv4_mapped if a.version == 6 and a.ipv4_mapped else a for a in found]


def _own_endpoints() -> set[tuple[str, int]]:
    """(address, port) of every service CHOM talks to or serves on."""
    names = (
        "SITE_URL", "CELERY_BROKER_URL", "REDIS_URL", "S3_ENDPOINT_URL", "PROMETHEUS_URL",
        "ALERTMANAGER_URL", "LOKI_URL", "LOKI_PUSH_URL", "GRAFANA_URL",
    )  # fmt: skip
    urls = [getattr(settings, name, "") or "" for name in names]
    endpoints = set()
    database = settings.DATABASES["default"]
    if database.get("HOST"):
        endpoints |= {(str(a), int(database.get("PORT") or 5432)) for a in _addresses(database["HOST"])}
    for url in filter(None, urls):
        parts = urlsplit(url)
        if parts.hostname:
            port = parts.port or {"https": 443, "redis": 6379, "rediss": 6379}.get(parts.scheme, 80)
            endpoints |= {(str(a), port) for a in _addresses(parts.hostname)}
    return endpoints


def _allowed_networks() -> list:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.REPOSITORY_ALLOWED_NETWORKS]


def repository_url_normalized(url: str) -> str:
    """URL with the scp-like form spelled as the ssh:// URL git takes it for."""
    scp = SCP_LIKE_RE.fullmatch(url)
    if scp is None:
        return url
    path = scp["path"] if scp["path"].startswith("/") else "/~/" + scp["path"]
    return f"ssh://{scp['user']}@{scp['host']}{path}"


def repository_is_ssh(url: str) -> bool:
    """Cloned over SSH, so with the site's deploy key and a pinned host key."""
    return urlsplit(repository_url_normalized(url)).scheme == "ssh"


def repository_endpoint(url: str) -> tuple[str, int]:
    """(host, port) the VPS connects to for URL, lower-cased host; ("", 0) when it has none."""
    parts = urlsplit(repository_url_normalized(url))
    try:
        return (parts.hostname or "", parts.port or DEFAULT_PORTS.get(parts.scheme, 0))
    except ValueError:
        return (parts.hostname or "", 0)


def repository_url_check(url: str) -> None:
    """Raise RepositoryRefused when URL may not be cloned by a site."""
    parts = urlsplit(repository_url_normalized(url))
    if "@" in parts.netloc and ":" in parts.netloc.rsplit("@", 1)[0]:
        raise RepositoryRefused(
            "Do not put a password or token in the repository URL; use a deploy key (or a public URL)."
        )
    host = parts.hostname or ""
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        raise RepositoryRefused("The repository URL's port is not a number from 1 to 65535.")
    allowed = _allowed_networks()
    own = _own_endpoints()
    for address in _addresses(host):
        if address.is_link_local:
            raise RepositoryRefused(f"{host} is a link-local address ({address}): not a git server.")
        if (str(address), port) in own:
            raise RepositoryRefused(f"{host}:{port} is one of CHOM's own services, not a git server.")
        internal = address.is_loopback or address.is_private or address.is_reserved or address.is_unspecified
        internal = internal or address.is_multicast
        if internal and not any(address in network for network in allowed):
            raise RepositoryRefused(
                f"{host} is an internal address ({address}); only public git servers, or networks in "
                "REPOSITORY_ALLOWED_NETWORKS, may be used."
            )
