"""What Prometheus scrapes: every monitored VPS's exporters, as http_sd / file_sd target groups."""

import json
import os
import tempfile
from pathlib import Path

from fleet.models import Vps

# (kind label, port). The mysqld exporter needs DB credentials CHOM cannot create with the
# agent's subcommands yet, so it is listed only where it was enabled by hand and is running.
EXPORTERS = (("node", 9100), ("nginx", 9113), ("mysqld", 9104))
MONITORED = (Vps.Status.ACTIVE, Vps.Status.DEGRADED, Vps.Status.UNREACHABLE)


def _address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _monitored(vps: Vps) -> bool:
    # A re-bootstrap must not make a known VPS vanish from Prometheus (and its alerts resolve).
    return vps.status in MONITORED or (vps.status == Vps.Status.BOOTSTRAPPING and vps.last_seen is not None)


def _exporter_enabled(vps: Vps, kind: str) -> bool:
    if kind != "mysqld":
        return True  # the bootstrap step "monitoring" enables node and nginx exporters
    return vps.facts.get("services", {}).get("prometheus-mysqld-exporter") == "active"


def sd_target_groups() -> list[dict]:
    groups = []
    for vps in Vps.objects.exclude(ip_address=None).select_related("tenant").order_by("name"):
        if not _monitored(vps):
            continue
        labels = {"vps": vps.name, "vps_kind": vps.kind}
        if vps.kind == Vps.Kind.DEDICATED and vps.tenant is not None:
            labels["tenant"] = vps.tenant.slug
        for kind, port in EXPORTERS:
            if _exporter_enabled(vps, kind):
                groups.append(
                    {"targets": [_address(vps.ip_address, port)], "labels": {**labels, "kind": kind}}
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
