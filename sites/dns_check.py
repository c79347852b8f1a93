"""Where a name points, as the public sees it: A and AAAA lookups from the control plane through
TLS_DNS_RESOLVERS ("host:port" each; empty = this machine's resolver), every call bounded by
TLS_DNS_TIMEOUT_SECONDS. Automatic TLS asks this before it requests a certificate, because the
ACME CA validates over HTTP at whatever address the name has."""

from dataclasses import dataclass

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
from django.conf import settings


class DnsError(Exception):
    """The name could not be looked up (timeout, no answering server): not an answer about it."""


@dataclass(frozen=True)
class Lookup:
    name: str
    addresses: frozenset[str]  # A and AAAA together; empty when the name has none
    missing: bool = False  # NXDOMAIN: the name does not exist


def _nameserver(spec: str) -> dns.nameserver.Do53Nameserver:
    host, sep, port = spec.strip().rpartition(":")
    if not sep or not port.isdigit():
        host, port = spec.strip(), "53"
    return dns.nameserver.Do53Nameserver(host.strip("[]"), int(port))


def _resolver() -> dns.resolver.Resolver:
    if settings.TLS_DNS_RESOLVERS:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [_nameserver(s) for s in settings.TLS_DNS_RESOLVERS]
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = settings.TLS_DNS_TIMEOUT_SECONDS
    resolver.cache = None  # a name just pointed at the VPS must be seen at the next check
    return resolver


def lookup(name: str, *, resolver: dns.resolver.Resolver | None = None) -> Lookup:
    """NAME's A and AAAA addresses. Raises DnsError when no server gave an answer."""
    resolver = resolver or _resolver()
    addresses: set[str] = set()
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            return Lookup(name=name, addresses=frozenset(), missing=True)
        except dns.resolver.NoAnswer:
            continue
        except dns.exception.Timeout as exc:
            raise DnsError(f"no DNS answer for {name} within {resolver.lifetime:g}s") from exc
        except dns.exception.DNSException as exc:
            raise DnsError(f"{name}: {exc}") from exc
        addresses.update(record.address for record in answer)
    return Lookup(name=name, addresses=frozenset(addresses))


def lookup_all(names: list[str]) -> dict[str, Lookup | DnsError]:
    """Each of NAMES looked up through one resolver; a name that could not be looked up maps to
    its DnsError (the others are still answered)."""
    resolver = _resolver()
    results: dict[str, Lookup | DnsError] = {}
    for name in names:
        try:
            results[name] = lookup(name, resolver=resolver)
        except DnsError as exc:
            results[name] = exc
    return results


def lookup_txt(name: str, *, resolver: dns.resolver.Resolver | None = None) -> set[str]:
    """The TXT values of NAME (empty when it has none or does not exist): DNS-01 waits until
    its challenge values are visible before it asks the ACME CA to look. Raises DnsError when
    no server gave an answer."""
    resolver = resolver or _resolver()
    try:
        answer = resolver.resolve(name, dns.rdatatype.TXT, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return set()
    except dns.exception.Timeout as exc:
        raise DnsError(f"no DNS answer for {name} within {resolver.lifetime:g}s") from exc
    except dns.exception.DNSException as exc:
        raise DnsError(f"{name}: {exc}") from exc
    return {b"".join(record.strings).decode("utf-8", "replace") for record in answer}
