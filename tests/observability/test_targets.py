"""Prometheus service discovery: http_sd endpoint and file_sd writer."""

import json

import pytest
from django.core.management import call_command

from fleet.models import Vps
from observability.targets import sd_file_write
from tests.observability.factories import make_vps

TOKEN = "sd-secret-token"


@pytest.fixture
def sd_token(settings):
    settings.PROMETHEUS_SD_TOKEN = TOKEN
    return TOKEN


def _get(client, token=TOKEN):
    return client.get("/observability/sd/targets", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_it_lists_node_and_nginx_exporters_of_monitored_vpses(client, sd_token, db):
    make_vps("web1", ip_address="192.0.2.10")
    make_vps("web2", ip_address="2001:db8::2", status=Vps.Status.DEGRADED)
    make_vps("new", ip_address="192.0.2.30", status=Vps.Status.BOOTSTRAPPING)  # never bootstrapped
    make_vps("gone", ip_address="192.0.2.40", status=Vps.Status.FAILED)

    response = _get(client)

    assert response.status_code == 200
    groups = response.json()
    assert {
        "targets": ["192.0.2.10:9100"],
        "labels": {"vps": "web1", "vps_kind": "shared", "kind": "node"},
    } in groups
    assert {
        "targets": ["[2001:db8::2]:9113"],
        "labels": {"vps": "web2", "vps_kind": "shared", "kind": "nginx"},
    } in groups
    assert {
        "targets": ["192.0.2.10:3903"],
        "labels": {"vps": "web1", "vps_kind": "shared", "kind": "mtail"},
    } in groups
    assert sorted({g["labels"]["vps"] for g in groups}) == ["web1", "web2"]
    assert len(groups) == 6  # node, nginx, mtail; no mysqld exporter: it is not running anywhere


def test_it_labels_dedicated_vpses_with_their_tenant_and_lists_a_running_mysqld_exporter(
    client, sd_token, alice
):
    facts = {"services": {"prometheus-mysqld-exporter": "active"}}
    make_vps("ded1", kind=Vps.Kind.DEDICATED, tenant=alice.tenant, facts=facts)
    groups = _get(client).json()
    assert {g["labels"]["kind"] for g in groups} == {"node", "nginx", "mysqld", "mtail"}
    assert all(g["labels"]["tenant"] == "acme" and g["labels"]["vps_kind"] == "dedicated" for g in groups)
    assert ["192.0.2.10:9104"] in [g["targets"] for g in groups]


def test_it_keeps_a_rebootstrapping_vps_in_discovery(client, sd_token, db):
    from django.utils import timezone

    make_vps("web1", status=Vps.Status.BOOTSTRAPPING, last_seen=timezone.now())
    assert len(_get(client).json()) == 3


def test_it_follows_the_fleet_as_it_changes(client, sd_token, db):
    assert _get(client).json() == []
    vps = make_vps("web1")
    assert len(_get(client).json()) == 3
    vps.delete()
    assert _get(client).json() == []


@pytest.mark.parametrize("header", ["", "Bearer wrong", f"Token {TOKEN}"])
def test_it_refuses_discovery_without_the_token(client, sd_token, db, header):
    response = client.get("/observability/sd/targets", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_it_refuses_discovery_when_no_token_is_configured(client, settings, db):
    settings.PROMETHEUS_SD_TOKEN = ""
    assert _get(client, token="").status_code == 401


def test_it_writes_the_file_sd_file_only_when_it_changes(tmp_path, db):
    path = tmp_path / "sd" / "chom.json"
    assert sd_file_write(path) is True
    assert json.loads(path.read_text()) == []
    assert sd_file_write(path) is False
    make_vps("web1")
    assert sd_file_write(path) is True
    assert [g["labels"]["kind"] for g in json.loads(path.read_text())] == ["node", "nginx", "mtail"]
    assert [p.name for p in path.parent.iterdir()] == ["chom.json"]  # no temp file left behind


def test_it_writes_file_sd_from_the_management_command(tmp_path, db, capsys):
    make_vps("web1")
    out = tmp_path / "targets.json"
    call_command("write_prometheus_targets", "--output", str(out))
    call_command("write_prometheus_targets", "--output", str(out))
    assert capsys.readouterr().out.splitlines() == [f"{out}: written", f"{out}: unchanged"]


def test_it_writes_file_sd_from_the_beat_job_when_configured(tmp_path, settings, db):
    from observability import tasks

    settings.PROMETHEUS_FILE_SD_PATH = ""
    assert tasks.write_sd_file() is False
    settings.PROMETHEUS_FILE_SD_PATH = str(tmp_path / "t.json")
    assert tasks.write_sd_file() is True and (tmp_path / "t.json").exists()
