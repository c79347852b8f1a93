#!/usr/bin/env python
"""Fault → alert in CHOM, with CHOM's real alert rules (their real `for`) and `make demo`'s
monitoring: a real Prometheus scraping, evaluating and refreshing targets every 10 s
(devstack.demo.DEMO_SCRAPE_SECONDS) and a real Alertmanager posting to CHOM's webhook. Needs root
and the fleet image (`python -m fleet.localfleet image`).

Boots one real local VPS (systemd-nspawn, Debian 12) on its own bridge through CHOM's `vps.create`
operation, serves CHOM over HTTP on 127.0.0.1 (Prometheus' service discovery and Alertmanager's
webhook are CHOM's real views; SQLite and the embedded broker under a throwaway var dir), waits
until every metric a rule reads is healthy, then puts every fault in place at once, through CHOM's
transport and the agent's `service-ensure`:

- VpsDown: the node exporter stops;
- MariaDBDown: MariaDB stops (its exporter answers mysql_up 0);
- SiteDown: PHP-FPM stops under a PHP site deployed from git, which then answers 502.

Each clock starts when its fault is in place and stops when CHOM holds the firing Alert row
(polled every 0.2 s). PASS when that is within the rule's `for` + 30 s. Then every fault is
removed and the time until CHOM records each alert resolved is printed.
"""

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="chom-bench-alerts-"))
BRIDGE, SUBNET = "chomalerts", "10.251.253"
GATEWAY = f"{SUBNET}.1"  # fleet.localfleet's bridge address
SD_TOKEN, HOOK_TOKEN = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
    os.environ.pop(name, None)
os.environ.update(
    DJANGO_SETTINGS_MODULE="chom.settings.local",
    CHOM_VAR_DIR=str(WORK),
    CHOM_LOCAL_PROVIDER="1",
    LOCAL_FLEET_DIR=str(WORK / "fleet"),
    LOCAL_FLEET_BRIDGE=BRIDGE,
    LOCAL_FLEET_SUBNET=SUBNET,
    FLEET_MONITORING_SOURCE=GATEWAY,  # the VPS's firewall lets the host scrape its exporters
    REPOSITORY_ALLOWED_NETWORKS=f"{SUBNET}.0/24",  # the git daemon listens on the gateway
    PROMETHEUS_SD_TOKEN=SD_TOKEN,
    ALERTMANAGER_WEBHOOK_TOKEN=HOOK_TOKEN,
    DEBUG="0",
)

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import transaction  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from chom.operations import operation_execute  # noqa: E402
from chom.services import tenant_create  # noqa: E402
from devstack.demo import DEMO_SCRAPE_SECONDS  # noqa: E402
from devstack.monitoring import ALERT_RULES, prometheus_config, start_monitoring  # noqa: E402
from fleet import localfleet, services  # noqa: E402
from fleet.remote.agent_client import Agent  # noqa: E402
from observability import targets  # noqa: E402
from observability.models import Alert  # noqa: E402
from sites.models import Site  # noqa: E402
from tests.support.git import GitServer, git_repo  # noqa: E402
from tests.support.processes import wait_for  # noqa: E402

DOMAIN = "down.bench"
MARGIN = 30  # issue 18: each alert within its rule's `for` + 30 s


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def serve_chom() -> tuple[str, ThreadedWSGIServer]:
    server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet)
    server.set_app(get_wsgi_application())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def rule_for(name: str) -> int:
    """The rule's real `for`, in seconds, from deploy/observability/alert-rules.yml."""
    import yaml

    for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                value = rule["for"]
                return int(value[:-1]) * {"s": 1, "m": 60, "h": 3600}[value[-1]]
    raise KeyError(name)


def site_down_missing() -> str:
    if "alert: SiteDown" not in ALERT_RULES.read_text():
        return "no SiteDown rule in deploy/observability/alert-rules.yml (issue 18 part 2)"
    config = prometheus_config(chom_url="http://chom", sd_token="t", alertmanager="am:1", rule_files=[])
    if not any(job.get("metrics_path") == "/probe" for job in config["scrape_configs"]):
        return "devstack.monitoring starts no blackbox exporter / probe job (issue 18 part 2)"
    return ""


def mariadb_missing(vps) -> str:
    labels = [group["labels"] for group in targets.sd_target_groups()]
    if any(label.get("vps") == vps.name and label.get("kind") == "mysqld" for label in labels):
        return ""
    return (
        f"the MariaDB exporter is not enabled at bootstrap (issue 18 part 3): no mysqld target for {vps.name}"
    )


class Fault:
    """One fault: the unit to stop, the metric that must be 1 before, the alert it must raise."""

    def __init__(self, alert: str, unit: str, healthy: str, labels: dict[str, str]):
        self.alert, self.unit, self.healthy, self.labels = alert, unit, healthy, labels
        self.seconds_for = rule_for(alert)
        self.started = self.fired = self.resolved = None
        self.row: Alert | None = None

    def firing(self) -> Alert | None:
        alerts = Alert.objects.filter(name=self.alert, status=Alert.Status.FIRING)
        for key, value in self.labels.items():
            alerts = alerts.filter(**{f"labels__{key}": value})
        return alerts.first()


def query(prometheus: str, promql: str) -> list[str]:
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
    return [r["value"][1] for r in answer["data"]["result"]]


def php_site(vps, forge: GitServer) -> Site:
    _, issued = tenant_create(slug="bench", tier="enterprise", owner_email="bench@localhost")
    api = APIClient(HTTP_HOST="localhost")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")
    git_repo(WORK / "site", {"index.php": "<?php echo 'up';\n"}, "v1")
    url = forge.publish(WORK / "site", "site.git")
    body = {"domain": DOMAIN, "type": "php", "repository": {"url": url, "branch": "main"}}
    created = api.post("/api/v1/sites", body, format="json")
    assert created.status_code == 202, created.content
    operation_execute(operation_id=created.json()["operation"]["id"])
    site = Site.objects.get(pk=created.json()["id"])
    page = requests.get(f"http://{vps.ip_address}/", headers={"Host": DOMAIN}, timeout=5)
    assert site.status == Site.Status.ACTIVE and page.text == "up", (site.status, page.text[:200])
    return site


def faults_for(vps, forge: GitServer) -> tuple[list[Fault], list[str]]:
    faults = [
        Fault(
            "VpsDown", "prometheus-node-exporter", f'up{{vps="{vps.name}", kind="node"}}', {"vps": vps.name}
        )
    ]
    missing = []
    reason = mariadb_missing(vps)
    if reason:
        missing.append(f"MariaDBDown: not available yet: {reason}")
    else:
        faults.append(Fault("MariaDBDown", "mariadb", f'mysql_up{{vps="{vps.name}"}}', {"vps": vps.name}))
    reason = site_down_missing()
    if reason:
        missing.append(f"SiteDown: not available yet: {reason}")
    else:
        site = php_site(vps, forge)
        healthy = f'probe_success{{domain="{DOMAIN}"}}'
        faults.append(Fault("SiteDown", f"php{site.php_version}-fpm", healthy, {"site": site.unix_user}))
    return faults, missing


def measure(vps, prometheus: str, faults: list[Fault]) -> None:
    for fault in faults:
        wait_for(
            lambda f=fault: query(prometheus, f.healthy) == ["1"], timeout=120, what=f"{fault.healthy} == 1"
        )
        assert fault.firing() is None, f"{fault.alert} is firing before its fault"
    print(f"all healthy; faults in place at once: {', '.join(f.unit for f in faults)}")
    with services.transport_for(vps) as transport:
        agent = Agent(transport)
        for fault in faults:
            agent.call("service-ensure", {"name": fault.unit, "running": False})
            fault.started = time.monotonic()
    deadline = time.monotonic() + max(f.seconds_for for f in faults) + MARGIN + 60
    while time.monotonic() < deadline and any(f.fired is None for f in faults):
        for fault in faults:
            if fault.fired is None and (row := fault.firing()):
                fault.fired, fault.row = time.monotonic() - fault.started, row
                print(f"  {fault.alert} in CHOM after {fault.fired:.1f}s")
        time.sleep(0.2)
    with services.transport_for(vps) as transport:
        agent = Agent(transport)
        for fault in faults:
            agent.call("service-ensure", {"name": fault.unit, "running": True})
            fault.started = time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(f.row and f.resolved is None for f in faults):
        for fault in faults:
            if fault.row and fault.resolved is None:
                fault.row.refresh_from_db()
                if fault.row.status == Alert.Status.RESOLVED:
                    fault.resolved = time.monotonic() - fault.started
        time.sleep(0.2)


def report(faults: list[Fault], missing: list[str]) -> int:
    print(
        f"\nscrape, rule evaluation and target refresh every {DEMO_SCRAPE_SECONDS}s (make demo); real `for`"
    )
    print(
        f"{'alert':13} {'for':>5} {'fault -> CHOM':>14} {'bound':>7} {'result':>7} {'fixed -> resolved':>18}"
    )
    failed = 0
    for f in faults:
        bound = f.seconds_for + MARGIN
        ok = f.fired is not None and f.fired <= bound
        failed += not ok
        fired = f"{f.fired:.1f}s" if f.fired is not None else "never"
        resolved = f"{f.resolved:.1f}s" if f.resolved is not None else "-"
        verdict = "PASS" if ok else "FAIL"
        print(f"{f.alert:13} {f.seconds_for:4d}s {fired:>14} {bound:6d}s {verdict:>7} {resolved:>18}")
    for line in missing:
        print(line)
    return 1 if failed else 0


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    call_command("migrate", verbosity=0)
    network = localfleet.network_up(BRIDGE, SUBNET)
    assert network.gateway == GATEWAY, network
    chom_url, server = serve_chom()
    (WORK / "srv").mkdir()
    forge = GitServer(WORK / "srv", network.gateway)
    stop_monitoring = None
    try:
        env, stop_monitoring, _ = start_monitoring(
            WORK / "monitoring", chom_url=chom_url, listen_ip=network.gateway, sd_token=SD_TOKEN,
            webhook_token=HOOK_TOKEN, interval=DEMO_SCRAPE_SECONDS,
        )  # fmt: skip
        with transaction.atomic():
            vps, op = services.vps_create(name="benchalerts1", provider="local")
        operation_execute(operation_id=op.id)
        vps.refresh_from_db()
        faults, missing = faults_for(vps, forge)
        started = time.monotonic()
        measure(vps, env["PROMETHEUS_URL"], faults)
        print(f"faults to last resolution: {time.monotonic() - started:.0f}s")
        return report(faults, missing)
    finally:
        if stop_monitoring:
            stop_monitoring()
        forge.stop()
        server.shutdown()
        server.server_close()
        for workdir in (WORK / "fleet").glob("*"):
            loaded = localfleet.vps_load(workdir)
            if loaded:
                localfleet.vps_destroy(loaded)
        localfleet.network_down(network)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
