"""Facts about an HTTP request that every app needs: who sent it, and whether it carries a
shared secret. Both treat every header as hostile (any bytes, any length)."""

import hmac
import ipaddress

from django.conf import settings


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address) -> bool:
    return address is not None and any(address in network for network in _trusted_networks())


def _trusted_networks():
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.TRUSTED_PROXIES]


def client_ip(request) -> str | None:
    """The client's address. `X-Forwarded-For` counts only when the peer is one of
    TRUSTED_PROXIES: then the right-most address in it that is not a trusted proxy is the client
    (what a client writes further left is not to be believed). A malformed entry ends the walk at
    the last trustworthy hop."""
    peer = request.META.get("REMOTE_ADDR")
    if not _trusted(_address(peer or "")):
        return peer
    client = peer
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _address(hop)
        if address is None:
            break
        client = str(address)
        if not _trusted(address):
            break
    return client


def bearer_matches(request, secret: str) -> bool:
    """`Authorization: Bearer SECRET`, compared in constant time; False for no SECRET configured
    and for any malformed header (non-ASCII included)."""
    if not secret:
        return False
    supplied = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(supplied, f"Bearer {secret}".encode())
