"""What a visitor of a site sees, asked of the site's VPS directly (DNS may not point there yet).

A visitor types `http://domain/`; with TLS the server block redirects to `https://domain/`, and
only the answer there is what the visitor sees. `visit` follows that one hop the way a browser
would (SNI = the domain), so a check of "the suspension page" or "the site answers" looks at the
page a person gets on either scheme, not at the redirect in between.
"""

import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

REDIRECTS = (301, 302, 307, 308)
TIMEOUT = urllib3.Timeout(connect=3.0, read=3.0)


class ProbeError(Exception):
    """The VPS did not answer (connection refused, timeout, TLS failure)."""


@dataclass(frozen=True)
class Answer:
    url: str
    status: int
    headers: dict

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def _get(ip: str, domain: str, scheme: str, path: str) -> Answer:
    port = 443 if scheme == "https" else 80
    if scheme == "https":
        # Certificate trust is proven when it is issued; here only the served page matters.
        pool = urllib3.HTTPSConnectionPool(
            ip, port, server_hostname=domain, cert_reqs="CERT_NONE", assert_hostname=False
        )
    else:
        pool = urllib3.HTTPConnectionPool(ip, port)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            response = pool.request(
                "GET", path, headers={"Host": domain}, redirect=False, retries=False, timeout=TIMEOUT
            )
    except urllib3.exceptions.HTTPError as exc:
        raise ProbeError(f"{scheme}://{domain}{path}: {exc}") from exc
    finally:
        pool.close()
    headers = {k.lower(): v for k, v in response.headers.items()}
    return Answer(url=f"{scheme}://{domain}{path}", status=response.status, headers=headers)


def visit(ip: str, domain: str, *, path: str = "/") -> list[Answer]:
    """The answers a visitor of http://DOMAIN/PATH gets from IP: one, or two when the first is a
    redirect to https on the same domain (the TLS server block)."""
    first = _get(ip, domain, "http", path)
    if first.status not in REDIRECTS:
        return [first]
    target = urlsplit(first.header("location"))
    if target.scheme != "https" or (target.hostname or "").lower() != domain.lower():
        return [first]
    return [first, _get(ip, domain, "https", target.path or "/")]
