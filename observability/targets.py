"""What Prometheus scrapes: every monitored VPS's exporters, as http_sd / file_sd target groups,
and every serving site's URLs for the blackbox exporter's uptime probes."""

import json
import os
import tempfile
from pathlib import Path

from fleet import selectors as fleet_selectors
from fleet.models import Vps
from sites import selectors as site_selectors

# (kind label, port). The mysqld exporter is listed where the bootstrap step "monitoring" gave it
# its MariaDB account (so it stays listed, and alerts, when it stops) or where facts say it runs
# (enabled by hand before CHOM managed it).
EXPORTERS = (("node", 9100), ("nginx", 9113), ("mysqld", 9104), ("mtail", 3903))
MONITORED = (Vps.Status.ACTIVE, Vps.Status.DEGRADED, Vps.Status.UNREACHABLE)


def _address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _monitored(vps: Vps) -> bool:
    # A re-bootstrap must not make a known VPS vanish from Prometheus (and its alerts resolve).
    return vps.status in MONITORED or (vps.status == Vps.Status.BOOTSTRAPPING and vps.last_seen is not None)


def _exporter_enabled(vps: Vps, kind: str, mysqld_enabled: set[int]) -> bool:
    if kind != "mysqld":
        return True  # the bootstrap step "monitoring" enables node, nginx exporters and mtail
    return (
        vps.pk in mysqld_enabled
        or vps.facts.get("services", {}).get("prometheus-mysqld-exporter") == "active"
    )


def sd_target_groups() -> list[dict]:
    groups = []
    mysqld_enabled = fleet_selectors.vps_ids_with_mariadb_monitoring()
    for vps in Vps.objects.exclude(ip_address=None).select_related("tenant").order_by("name"):
        if not _monitored(vps):
            continue
        labels = {"vps": vps.name, "vps_kind": vps.kind}
        if vps.kind == Vps.Kind.DEDICATED and vps.tenant is not None:
            labels["tenant"] = vps.tenant.slug
        for kind, port in EXPORTERS:
            if _exporter_enabled(vps, kind, mysqld_enabled):
                groups.append(
                    {"targets": [_address(vps.ip_address, port)], "labels": {**labels, "kind": kind}}
                )
    return groups


def _url(scheme: str, ip: str) -> str:
    return f"{scheme}://[{ip}]/" if ":" in ip else f"{scheme}://{ip}/"


def probe_target_groups() -> list[dict]:
    """http_sd for the blackbox exporter: each serving site's front page at its VPS's address
    (the domains need not resolve; Prometheus passes `domain` as the probe's `hostname`, which
    becomes the Host header and the TLS server name), https too once it has a certificate."""
    groups = []
    for site in site_selectors.sites_serving():
        labels = {
            "site": site.unix_user,
            "domain": site.domain,
            "tenant": site.tenant.slug,
            "vps": site.vps.name,
        }
        schemes = ("http", "https") if site.ssl_status == site.SslStatus.ACTIVE else ("http",)
        for scheme in schemes:
            groups.append(
                {"targets": [_url(scheme, site.vps.ip_address)], "labels": {**labels, "scheme": scheme}}
            )
    return groups


def sd_file_write(path: Path) -> bool:
    """Write the target groups for file_sd. Atomic (Prometheus never reads half a file) and only
    when the content differs. True when the file changed."""
    content = json.dumps(sd_target_groups(), indent=2, sort_keys=True) + "\n"
    if path.exists() and path.read_text() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
