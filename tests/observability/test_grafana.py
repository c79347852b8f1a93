"""Grafana folders and dashboards, created or updated idempotently by uid."""

import pytest

from observability.clients.grafana import (
    GrafanaError,
    dashboard_ensure,
    folder_ensure,
    loki_datasource_ensure,
)
from observability.dashboards import grafana_sync, grafana_uid
from tests.observability.factories import make_site, make_vps


def test_it_creates_folders_and_dashboards_then_changes_nothing(grafana, alice, charlie, settings):
    settings.LOKI_URL = "http://loki:3100"
    vps = make_vps("web1")
    site = make_site(alice.tenant, vps, "shop.acme.test")
    make_site(charlie.tenant, vps, "globex.test")

    first = grafana_sync()

    assert set(grafana.folders) == {"chom-fleet", "chom-tenant-acme", "chom-tenant-globex"}
    assert grafana.folders["chom-tenant-acme"] == "Tenant acme"
    stored = grafana.dashboards[f"chom-site-{site.pk}"]
    assert stored["meta"]["folderUid"] == "chom-tenant-acme"
    assert stored["dashboard"]["title"] == "Site shop.acme.test"
    expr = stored["dashboard"]["panels"][0]["targets"][0]["expr"]
    assert f'site="{site.unix_user}"' in expr and 'vps="web1"' in expr
    assert grafana.dashboards["chom-vps-web1"]["meta"]["folderUid"] == "chom-fleet"
    assert "chom-fleet-overview" in grafana.dashboards
    assert len(first.changed) == 8  # 3 folders, fleet, 1 VPS, 1 Loki datasource, 2 sites
    write = next(r for r in grafana.writes() if r.path == "/api/dashboards/db")
    assert write.body["overwrite"] is True and write.body["dashboard"]["id"] is None

    writes = len(grafana.writes())
    second = grafana_sync()
    assert second.changed == [] and second.unchanged == 8
    assert len(grafana.writes()) == writes


def test_it_reads_each_sites_logs_through_a_datasource_for_its_vps_tenant(grafana, alice, settings):
    settings.LOKI_URL = "http://loki:3100"
    web1, web2 = make_vps("web1"), make_vps("web2", ip_address="192.0.2.11")
    sites = [
        make_site(alice.tenant, vps, f"s{i}.{vps.name}.acme.test") for i, vps in enumerate((web1, web1, web2))
    ]

    grafana_sync()

    assert set(grafana.datasources) == {f"chom-loki-vps-{web1.pk}", f"chom-loki-vps-{web2.pk}"}
    source = grafana.datasources[f"chom-loki-vps-{web2.pk}"]
    assert (source["type"], source["url"], source["name"]) == ("loki", "http://loki:3100", "Loki web2")
    assert source["jsonData"] == {"httpHeaderName1": "X-Scope-OrgID"}
    assert source["secureJsonData"] == {"httpHeaderValue1": f"vps-{web2.pk}"}
    for site in sites:
        panels = grafana.dashboards[f"chom-site-{site.pk}"]["dashboard"]["panels"]
        uids = {p["datasource"]["uid"] for p in panels} | {
            t["datasource"]["uid"] for p in panels for t in p["targets"]
        }
        assert uids == {f"chom-loki-vps-{site.vps_id}"}


def test_it_updates_a_loki_datasource_that_drifted(grafana, db):
    wanted = {"uid": "chom-loki-vps-1", "name": "Loki web1", "url": "http://loki:3100", "org_id": "vps-1"}
    assert loki_datasource_ensure(**wanted) is True
    assert loki_datasource_ensure(**wanted) is False
    assert loki_datasource_ensure(**{**wanted, "url": "http://127.0.0.1:3100"}) is True
    grafana.datasources["chom-loki-vps-1"].pop("secureJsonData")  # the tenant header lost by hand
    assert loki_datasource_ensure(**wanted) is True
    stored = grafana.datasources["chom-loki-vps-1"]
    assert stored["url"] == "http://loki:3100"
    assert stored["secureJsonData"] == {"httpHeaderValue1": "vps-1"}
    assert [r.method for r in grafana.writes()] == ["POST", "PUT", "PUT"]


def test_it_makes_no_loki_datasources_without_loki(grafana, alice, settings):
    settings.LOKI_URL = ""
    make_site(alice.tenant, make_vps("web1"), "shop.acme.test")
    grafana_sync()
    assert grafana.datasources == {}


def test_it_updates_a_dashboard_whose_content_changed(grafana, db):
    folder_ensure(uid="f1", title="F1")
    dashboard = {"uid": "d1", "title": "One", "panels": []}
    assert dashboard_ensure(dashboard=dashboard, folder_uid="f1") is True
    assert dashboard_ensure(dashboard=dashboard, folder_uid="f1") is False
    assert dashboard_ensure(dashboard={**dashboard, "title": "Uno"}, folder_uid="f1") is True
    assert grafana.dashboards["d1"]["dashboard"]["version"] == 2


def test_it_renames_a_folder_whose_title_changed(grafana, db):
    assert folder_ensure(uid="f1", title="Old") is True
    assert folder_ensure(uid="f1", title="New") is True
    assert grafana.folders == {"f1": "New"} and grafana.writes()[-1].method == "PUT"


def test_it_keeps_uids_within_grafanas_limit():
    assert grafana_uid("chom-vps", "web1") == "chom-vps-web1"
    long = grafana_uid("chom-vps", "a" * 63)
    assert len(long) == 40 and long.startswith("chom-vps-")


def test_it_raises_a_permanent_error_on_a_bad_token_and_a_transient_one_when_down(grafana, settings, db):
    settings.GRAFANA_TOKEN = "wrong"
    with pytest.raises(GrafanaError) as refused:
        folder_ensure(uid="f1", title="F")
    assert refused.value.permanent is True
    settings.GRAFANA_TOKEN = grafana.token
    grafana.fail(503)
    with pytest.raises(GrafanaError) as down:
        folder_ensure(uid="f1", title="F")
    assert down.value.permanent is False
