"""Domain names customers may host: IDNA-normalised, RFC 1123 labels, nothing a shell or a path
could mistake for syntax. A wildcard (`*.example.com`, when the caller allows it) has exactly one
`*`, as its whole leftmost label, above at least two labels: nginx's `server_name *.example.com`
and a DNS-01 certificate for it."""

import ipaddress
import re

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_LENGTH = 253


class InvalidDomain(ValueError):
    pass


WILDCARD_PREFIX = "*."


def is_wildcard(domain: str) -> bool:
    return domain.startswith(WILDCARD_PREFIX)


def probe_host(domain: str) -> str:
    """A concrete name a wildcard serves (for checking it from the control plane)."""
    return "chom-check." + domain[len(WILDCARD_PREFIX) :] if is_wildcard(domain) else domain


def normalize_domain(value: str, *, wildcard: bool = False) -> str:
    """Return the ASCII (punycode) lowercase form of VALUE or raise InvalidDomain with why.
    WILDCARD: a leading `*.` label is allowed (and kept)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidDomain("Enter a domain name.")
    raw = value.strip().rstrip(".").lower()
    if wildcard and raw.startswith(WILDCARD_PREFIX) and "*" not in raw[len(WILDCARD_PREFIX) :]:
        base = normalize_domain(raw[len(WILDCARD_PREFIX) :])
        if len(base.split(".")) < 2 or len(WILDCARD_PREFIX + base) > MAX_LENGTH:
            raise InvalidDomain("A wildcard covers the names below a domain such as *.example.com.")
        return WILDCARD_PREFIX + base
    if "*" in raw:
        if wildcard:
            raise InvalidDomain("A wildcard is only allowed as the whole first label, as in *.example.com.")
        raise InvalidDomain("Wildcard domains are not supported.")
    if any(c in raw for c in "/\\;|&$`'\"<>(){}[] \t\n\r\x00:@,=?#%!~^"):
        raise InvalidDomain("A domain contains only letters, digits, dashes and dots.")
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        pass
    else:
        raise InvalidDomain("Use a domain name, not an IP address.")
    try:
        ascii_name = raw.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidDomain("This is not a valid internationalised domain name.")
    if len(ascii_name) > MAX_LENGTH:
        raise InvalidDomain(f"A domain has at most {MAX_LENGTH} characters.")
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise InvalidDomain("Use a fully qualified domain such as example.com.")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise InvalidDomain(f"'{label}' is not a valid label (1-63 letters, digits or inner dashes).")
    if labels[-1].isdigit():
        raise InvalidDomain("The top-level domain cannot be numeric.")
    return ascii_name
