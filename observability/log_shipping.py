"""Log shipping: Promtail on each VPS pushes to CHOM, never to Loki.

Each VPS has its own bearer token (`<vps id>.<secret>`, LogShippingCredential), written only into
its Promtail config (0600, Promtail's own account). CHOM looks the credential up by the id,
compares the secret in constant time, and forwards the push unchanged into that VPS's Loki tenant
(`X-Scope-OrgID`, clients.loki.vps_org_id), whatever tenant header the request carried. So a site
user, who cannot read that config, cannot push at all, and a VPS can only ever write into its own
tenant: lines it labels as another VPS's site are never read for that site. Loki itself is
reachable by CHOM (and Grafana) only.
"""

import hmac
import re
import secrets

from fleet.models import Vps
from observability.clients import loki
from observability.models import LogShippingCredential

# ASCII only (re.ASCII): \d would accept other scripts' digits, which int() understands.
_TOKEN = re.compile(r"Bearer (\d{1,18})\.([A-Za-z0-9_-]{20,200})", re.ASCII)


def log_credential_ensure(*, vps: Vps) -> str:
    """The VPS's log-shipping token: created on first use, the same on every later call."""
    credential, _ = LogShippingCredential.objects.get_or_create(
        vps=vps, defaults={"secret": secrets.token_urlsafe(32)}
    )
    return credential.token


def log_push_vps_id(*, authorization: str) -> int | None:
    """The id of the VPS whose token `Authorization: Bearer <token>` carries; None for anything else
    (no header, another scheme, a malformed or unknown token, a wrong secret)."""
    match = _TOKEN.fullmatch(authorization)
    if match is None:
        return None
    vps_id, secret = int(match[1]), match[2]
    credential = LogShippingCredential.objects.filter(vps_id=vps_id).first()
    if credential is None or not hmac.compare_digest(secret.encode(), credential.secret.encode()):
        return None
    return vps_id


def log_push_forward(*, vps_id: int, body: bytes, content_type: str, content_encoding: str) -> None:
    """Store the push in the VPS's own Loki tenant; raises LokiError when Loki refuses or is down."""
    loki.push(
        body, org_id=loki.vps_org_id(vps_id), content_type=content_type, content_encoding=content_encoding
    )
