"""Domain names customers may host: IDNA-normalised, RFC 1123 labels, nothing a shell or a path
could mistake for syntax."""

import ipaddress
import re

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_LENGTH = 253


class InvalidDomain(ValueError):
    pass


def normalize_domain(value: str) -> str:
    """Return the ASCII (punycode) lowercase form of VALUE or raise InvalidDomain with why."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidDomain("Enter a domain name.")
    raw = value.strip().rstrip(".").lower()
    if "*" in raw:
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
