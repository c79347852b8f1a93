"""Grafana dashboards from the JSON in deploy/observability/dashboards/: the fleet overview and one
per VPS in the "CHOM fleet" folder, one per site in its tenant's folder. Loki keeps each VPS's
logs in the VPS's own tenant, so each VPS with sites gets a Loki datasource reading that tenant,
and a site's dashboard reads through its VPS's. Idempotent by uid."""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from fleet.models import Vps
from observability.clients import grafana, loki
from sites import selectors as site_selectors

DASHBOARDS_DIR = settings.BASE_DIR / "deploy" / "observability" / "dashboards"
FLEET_FOLDER = ("chom-fleet", "CHOM fleet")
UID_MAX = 40  # Grafana's limit


def grafana_uid(prefix: str, name: str) -> str:
    uid = f"{prefix}-{name}"
    if len(uid) <= UID_MAX:
        return uid
    return f"{prefix}-{hashlib.sha256(name.encode()).hexdigest()[: UID_MAX - len(prefix) - 1]}"


def _substitute(value, values: dict[str, str]):
    if isinstance(value, str):
        for placeholder, replacement in values.items():
            value = value.replace(placeholder, replacement)
        return value
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    return value


def render(template: str, values: dict[str, str], directory: Path = DASHBOARDS_DIR) -> dict:
    # Substituted inside parsed JSON strings, so a value can never break the document's structure.
    return _substitute(json.loads((directory / f"{template}.json").read_text()), values)


def vps_dashboard(vps: Vps) -> dict:
    return render("vps", {"__UID__": grafana_uid("chom-vps", vps.name), "__VPS__": vps.name})


def loki_datasource_uid(vps_id: int) -> str:
    return f"chom-loki-vps-{vps_id}"


def site_dashboard(site) -> dict:
    values = {
        "__UID__": grafana_uid("chom-site", str(site.pk)),
        "__LOKI__": loki_datasource_uid(site.vps_id),
        "__VPS__": site.vps.name,
        "__SITE__": site.unix_user,
        "__DOMAIN__": site.domain,
    }
    return render("site", values)


@dataclass
class SyncResult:
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def add(self, uid: str, changed: bool) -> None:
        if changed:
            self.changed.append(uid)
        else:
            self.unchanged += 1


def _loki_datasource_ensure(vps: Vps) -> tuple[str, bool]:
    uid = loki_datasource_uid(vps.pk)
    changed = grafana.loki_datasource_ensure(
        uid=uid, name=f"Loki {vps.name}", url=settings.LOKI_URL, org_id=loki.vps_org_id(vps.pk)
    )
    return uid, changed


def grafana_sync() -> SyncResult:
    result = SyncResult()
    fleet_uid, fleet_title = FLEET_FOLDER
    result.add(fleet_uid, grafana.folder_ensure(uid=fleet_uid, title=fleet_title))
    fleet = render("fleet", {})
    result.add(fleet["uid"], grafana.dashboard_ensure(dashboard=fleet, folder_uid=fleet_uid))
    for vps in Vps.objects.exclude(ip_address=None).order_by("name"):
        dashboard = vps_dashboard(vps)
        result.add(dashboard["uid"], grafana.dashboard_ensure(dashboard=dashboard, folder_uid=fleet_uid))
    folders: set[str] = set()
    datasources: set[int] = set()
    sites = site_selectors.sites_visible(tenant=None, staff=True).exclude(unix_user="").order_by("pk")
    for site in sites:
        if settings.LOKI_URL and site.vps_id not in datasources:
            datasources.add(site.vps_id)
            result.add(*_loki_datasource_ensure(site.vps))
        folder_uid = grafana_uid("chom-tenant", site.tenant.slug)
        if folder_uid not in folders:
            folders.add(folder_uid)
            result.add(folder_uid, grafana.folder_ensure(uid=folder_uid, title=f"Tenant {site.tenant.name}"))
        dashboard = site_dashboard(site)
        result.add(dashboard["uid"], grafana.dashboard_ensure(dashboard=dashboard, folder_uid=folder_uid))
    return result
