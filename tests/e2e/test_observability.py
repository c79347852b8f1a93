"""Monitoring end to end: a real VPS bootstrapped by CHOM appears in CHOM's service discovery, is
scraped by a real Prometheus (node and nginx exporters up) and its metrics come back through
CHOM's API; the monitoring bootstrap step changes nothing on a second run."""

import time

import pytest
import requests
from django.db import transaction

from chom.operations import operation_execute
from fleet import services
from fleet.remote.commands import Command
from observability.models import Alert
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e
STUB_STATUS = (
    "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/stub_status').read().decode())"
)


@pytest.fixture
def monitoring(start_prometheus, fleet_network, settings):
    env = start_prometheus()
    # Promtail's config is written even though no Loki runs: only the push address matters here.
    settings.LOKI_URL = settings.LOKI_PUSH_URL = f"http://{fleet_network[0].gateway}:3100"
    return env


def _up(env, vps: str) -> dict[str, str]:
    result = requests.get(
        f"{env['PROMETHEUS_URL']}/api/v1/query", params={"query": f'up{{vps="{vps}"}}'}, timeout=5
    ).json()["data"]["result"]
    return {r["metric"]["kind"]: r["value"][1] for r in result}


def test_it_discovers_scrapes_and_serves_the_metrics_of_a_new_vps(monitoring, make_vps, staff):
    vps = make_vps("e2e-obs")
    bootstrapped = time.monotonic()

    wait_for(
        lambda: _up(monitoring, vps.name) == {"node": "1", "nginx": "1", "mysqld": "1", "mtail": "1"},
        timeout=30,
        interval=0.2,
        what="node, nginx and mysqld exporters and mtail up",
    )
    print(f"\nnew VPS -> scraped (up == 1): {time.monotonic() - bootstrapped:.2f}s after bootstrap")

    def metrics():
        body = staff.client().get(f"/api/v1/vps/{vps.pk}/metrics", {"range": "15m"}).json()
        series = body["series"]
        return (
            body
            if series["cpu"]["values"] and series["memory"]["values"] and series["load"]["values"]
            else None
        )

    body = wait_for(metrics, timeout=30, interval=0.5, what="metrics through CHOM's API")
    assert body["source"] == "prometheus" and body["series"]["memory"]["unit"] == "percent"
    timestamp, value = body["series"]["memory"]["values"][-1]
    assert 0 < value < 100 and timestamp > time.time() - 120
    print(f"metrics through the API: {time.monotonic() - bootstrapped:.2f}s after bootstrap")


def test_it_installs_promtail_config_reports_the_missing_binary_and_changes_nothing_twice(
    monitoring, make_vps, settings
):
    vps = make_vps("e2e-obs2")
    with services.transport_for(vps) as transport:
        config = transport.run(Command.of("cat", "/etc/promtail/config.yml")).stdout
        stub = transport.run(Command.of("python3", "-c", STUB_STATUS)).stdout
    assert "vps: e2e-obs2" in config and f"url: {settings.LOKI_PUSH_URL}/loki/api/v1/push" in config
    assert "Active connections" in stub
    alert = Alert.objects.get(name="promtail_missing", status="firing")
    assert "e2e-obs2" in alert.summary

    with transaction.atomic():
        again = services.vps_bootstrap_request(vps=vps)
    operation_execute(operation_id=again.id)
    again.refresh_from_db()
    assert again.status == "succeeded" and again.result == {"changed_steps": 0}, again.error
    log = [e.message for e in again.log_entries.all()]
    assert "monitoring: no change" in log
    assert any("WARNING: promtail is not installed on e2e-obs2" in line for line in log)
    assert Alert.objects.filter(name="promtail_missing").count() == 1


STUB_STATUS_PROBE = (
    "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:8080/stub_status').read().decode())"
)


def monitoring_push(vps) -> str:
    from django.conf import settings

    return settings.LOKI_PUSH_URL
