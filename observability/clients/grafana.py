"""Grafana's HTTP API: folders, dashboards and Loki datasources, created or updated idempotently
by uid."""

import hashlib
import json

import requests
from django.conf import settings

from observability.clients import NotConfigured, ServiceError


class GrafanaError(ServiceError):
    service = "grafana"


def _request(method: str, path: str, *, body: dict | None = None) -> requests.Response:
    base = settings.GRAFANA_URL
    if not base:
        raise NotConfigured("GRAFANA_URL")
    headers = {"Accept": "application/json"}
    if settings.GRAFANA_TOKEN:
        headers["Authorization"] = f"Bearer {settings.GRAFANA_TOKEN}"
    try:
        response = requests.request(
            method,
            base.rstrip("/") + path,
            json=body,
            headers=headers,
            timeout=settings.OBSERVABILITY_QUERY_TIMEOUT,
        )
    except requests.RequestException as exc:
        raise GrafanaError(f"Grafana is unreachable: {exc.__class__.__name__}") from exc
    if response.status_code >= 400 and response.status_code != 404:
        raise GrafanaError(
            f"Grafana {method} {path} answered {response.status_code}: {response.text[:300]}",
            permanent=response.status_code in (400, 401, 403, 412, 422),
        )
    return response


def folder_ensure(*, uid: str, title: str) -> bool:
    """Create the folder, or rename it when its title differs. True when something changed."""
    response = _request("GET", f"/api/folders/{uid}")
    if response.status_code == 404:
        _request("POST", "/api/folders", body={"uid": uid, "title": title})
        return True
    if response.json().get("title") == title:
        return False
    _request("PUT", f"/api/folders/{uid}", body={"title": title, "overwrite": True})
    return True


def content_tag(dashboard: dict) -> str:
    """Grafana rewrites stored JSON (ids, versions, schema migrations), so equality is judged by a
    tag carrying the hash of what CHOM sent."""
    digest = hashlib.sha256(json.dumps(dashboard, sort_keys=True).encode()).hexdigest()[:16]
    return f"chom:{digest}"


def dashboard_ensure(*, dashboard: dict, folder_uid: str) -> bool:
    """Store DASHBOARD (which carries its uid) in the folder unless Grafana already has exactly it."""
    tag = content_tag(dashboard)
    response = _request("GET", f"/api/dashboards/uid/{dashboard['uid']}")
    if response.status_code == 200:
        current = response.json()
        same_folder = current.get("meta", {}).get("folderUid") == folder_uid
        if same_folder and tag in current.get("dashboard", {}).get("tags", []):
            return False
    tags = [*dashboard.get("tags", []), tag]
    body = {
        "dashboard": {**dashboard, "id": None, "tags": tags},
        "folderUid": folder_uid,
        "overwrite": True,
        "message": "updated by CHOM",
    }
    _request("POST", "/api/dashboards/db", body=body)
    return True


def loki_datasource_ensure(*, uid: str, name: str, url: str, org_id: str) -> bool:
    """A Loki datasource that reads tenant ORG_ID (Loki runs with auth_enabled). Grafana never
    shows a stored header value back, so the tenant is judged by the uid it is derived from."""
    wanted = {
        "uid": uid,
        "name": name,
        "type": "loki",
        "access": "proxy",
        "url": url,
        "jsonData": {"httpHeaderName1": "X-Scope-OrgID"},
    }
    response = _request("GET", f"/api/datasources/uid/{uid}")
    if response.status_code == 200:
        current = response.json()
        same = all(current.get(key) == value for key, value in wanted.items() if key != "jsonData")
        header = current.get("jsonData", {}).get("httpHeaderName1") == "X-Scope-OrgID"
        if same and header and current.get("secureJsonFields", {}).get("httpHeaderValue1"):
            return False
    body = {**wanted, "secureJsonData": {"httpHeaderValue1": org_id}}
    if response.status_code == 404:
        _request("POST", "/api/datasources", body=body)
    else:
        _request("PUT", f"/api/datasources/uid/{uid}", body=body)
    return True
