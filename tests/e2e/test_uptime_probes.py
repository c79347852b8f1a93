"""Uptime probes end to end: a static site deployed by CHOM on a real VPS is found through CHOM's
probe list by a real Prometheus, probed by a real blackbox exporter (Host header = the domain, at
the VPS's address: the domain resolves nowhere), and shows as up in CHOM's API. Its nginx stopped
(through CHOM's transport and agent) → the probe fails → SiteDown (a test copy of the rule with
`for: 2s`) reaches CHOM's webhook as an Alert about that site; nginx started → resolved."""

import time

import pytest
import requests

from chom.operations import operation_execute
from devstack.monitoring import start_monitoring
from fleet import services
from fleet.remote.agent_client import Agent
from observability.models import Alert
from sites.models import Site
from tests.support.alert_rules import fast_rules
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e
FOR_SECONDS = 2
WITHIN = 60


@pytest.fixture
def monitoring(live_server, fleet_network, settings, tmp_path, transactional_db):
    network, _, _ = fleet_network
    settings.PROMETHEUS_SD_TOKEN, settings.ALERTMANAGER_WEBHOOK_TOKEN = "sd-token", "hook-token"
    env, stop, _ = start_monitoring(
        tmp_path / "monitoring",
        chom_url=live_server.url,
        listen_ip=network.gateway,
        sd_token="sd-token",
        webhook_token="hook-token",
        rules=fast_rules(for_seconds=FOR_SECONDS),
    )
    settings.PROMETHEUS_URL = env["PROMETHEUS_URL"]
    yield env
    stop()


def _probe_success(env, site: Site) -> list[str]:
    answer = requests.get(
        f"{env['PROMETHEUS_URL']}/api/v1/query",
        params={"query": f'probe_success{{job="chom-probes", site="{site.unix_user}"}}'},
        timeout=5,
    )
    return [r["value"][1] for r in answer.json()["data"]["result"]]


def _probe(env, vps, hostname: str) -> float:
    """One probe by the blackbox exporter itself, as Prometheus asks for it."""
    answer = requests.get(
        f"{env['BLACKBOX_URL']}/probe",
        params={"module": "chom_site", "target": f"http://{vps.ip_address}/", "hostname": hostname},
        timeout=15,
    )
    [line] = [x for x in answer.text.splitlines() if x.startswith("probe_success ")]
    return float(line.split()[1])


def _nginx(vps, *, running: bool) -> str:
    with services.transport_for(vps) as transport:
        return Agent(transport).call("service-ensure", {"name": "nginx", "running": running}).data["state"]


def _site_down(site: Site, status: str) -> Alert | None:
    return Alert.objects.filter(name="SiteDown", site=site, status=status).first()


def test_it_probes_a_site_and_raises_site_down_when_its_nginx_stops(monitoring, make_vps, alice):
    vps = make_vps("e2e-probes")
    created = alice.client().post("/api/v1/sites", {"domain": "uptime.test", "type": "static"}, format="json")
    assert created.status_code == 202, created.content
    operation_execute(operation_id=created.json()["operation"]["id"])
    site = Site.objects.get(pk=created.json()["id"])
    assert site.status == Site.Status.ACTIVE

    wait_for(lambda: _probe_success(monitoring, site) == ["1"], timeout=WITHIN, what="the probe succeeding")
    uptime = alice.client().get(f"/api/v1/sites/{site.pk}/uptime").json()
    assert uptime["state"] == "up" and uptime["urls"][0]["url"] == "http://uptime.test/", uptime
    assert _site_down(site, Alert.Status.FIRING) is None
    # nginx's default server answers 200 for a name it does not serve: not a CHOM answer, down.
    default = requests.get(f"http://{vps.ip_address}/", headers={"Host": "nobody.test"}, timeout=5)
    assert default.status_code == 200 and "X-Chom-Site" not in default.headers
    assert _probe(monitoring, vps, "nobody.test") == 0
    assert _probe(monitoring, vps, "uptime.test") == 1

    assert _nginx(vps, running=False) != "active"
    stopped = time.monotonic()
    try:
        wait_for(lambda: _probe_success(monitoring, site) == ["0"], timeout=WITHIN, what="the probe failing")
        probe_failed = time.monotonic() - stopped
        alert = wait_for(
            lambda: _site_down(site, Alert.Status.FIRING),
            timeout=WITHIN,
            interval=0.2,
            what="SiteDown in CHOM",
        )
        fired = time.monotonic() - stopped
        print(
            f"\nnginx stopped -> probe_success 0: {probe_failed:.1f}s; -> SiteDown in CHOM: {fired:.1f}s"
            f" (rule for: {FOR_SECONDS}s)"
        )
        assert alert.tenant == alice.tenant and alert.severity == "critical"
        assert alert.labels["domain"] == "uptime.test" and alert.labels["vps"] == vps.name
        assert alice.client().get(f"/api/v1/sites/{site.pk}/uptime").json()["state"] == "down"
    finally:
        assert _nginx(vps, running=True) == "active"
    started = time.monotonic()
    wait_for(
        lambda: _site_down(site, Alert.Status.RESOLVED),
        timeout=WITHIN,
        interval=0.2,
        what="SiteDown resolved",
    )
    print(f"nginx started -> SiteDown resolved in CHOM: {time.monotonic() - started:.1f}s")
    assert _probe_success(monitoring, site) == ["1"]
