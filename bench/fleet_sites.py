#!/usr/bin/env python
"""Fleet and sites speed on the local test fleet (real nspawn VPS, real sshd/nginx/php-fpm/MariaDB,
real ACME CA). Needs root and the fleet image (`python -m fleet.localfleet image`).

Prints medians for: VPS boot + first bootstrap, bootstrap re-run, one agent call over a warm
connection, the one-exec floor, static site API-to-serving, unchanged re-apply, PHP site with
database, certificate issue. The API part runs in-process (DRF test client + the operation runner),
so broker pick-up latency (~0.1 s with the embedded broker) is not included.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="chom-bench-"))
for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
    os.environ.pop(name, None)
os.environ.update(
    DJANGO_SETTINGS_MODULE="chom.settings.local",
    CHOM_VAR_DIR=str(WORK),
    CHOM_LOCAL_PROVIDER="1",
    LOCAL_FLEET_DIR=str(WORK / "fleet"),
    LOCAL_FLEET_BRIDGE="chombench",
    LOCAL_FLEET_SUBNET="10.251.250",
    DEBUG="0",
)

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import override_settings  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from chom.operations import operation_create, operation_execute  # noqa: E402
from chom.services import tenant_create  # noqa: E402
from devstack.pebble import start_pebble  # noqa: E402
from fleet import localfleet, services  # noqa: E402
from fleet.remote.agent_client import Agent  # noqa: E402
from fleet.remote.commands import Command  # noqa: E402
from sites.models import Site  # noqa: E402


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def run_op(op_id):
    operation_execute(operation_id=op_id)
    from chom.models import Operation

    op = Operation.objects.get(id=op_id)
    if op.status != "succeeded":
        raise SystemExit(f"operation {op.kind} failed: {op.error}")
    return op


def wait_served(ip: str, domain: str, needle: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if needle in requests.get(f"http://{ip}/", headers={"Host": domain}, timeout=2).text:
                return
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise SystemExit(f"{domain} not served")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    network = localfleet.network_up("chombench", "10.251.250")
    pebble = start_pebble(WORK / "pebble", listen_ip=network.gateway, validation_port=80)
    results: dict[str, list[float]] = {}
    try:
        measure(results, args.runs, pebble)
    finally:
        pebble.stop()
        for workdir in (WORK / "fleet").glob("*"):
            vps = localfleet.vps_load(workdir)
            if vps:
                localfleet.vps_destroy(vps)
        localfleet.network_down(network)
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"\n{'measure':58} {'median':>9} {'runs':>5}")
    for name, values in results.items():
        print(f"{name:58} {statistics.median(values):8.3f}s {len(values):5d}")


def measure(results, runs, pebble) -> None:
    with transaction.atomic():
        vps, op = services.vps_create(name="bench1", provider="local")
    seconds, _ = timed(lambda: run_op(op.id))
    results["VPS boot + first bootstrap (cold)"] = [seconds]
    vps.refresh_from_db()

    rerun = []
    for _ in range(runs):
        with transaction.atomic():
            op = services.vps_bootstrap_request(vps=vps)
        seconds, done = timed(lambda op=op: run_op(op.id))
        assert done.result["changed_steps"] == 0, done.result
        rerun.append(seconds)
    results["bootstrap re-run on a ready VPS (no changes)"] = rerun

    with services.transport_for(vps) as transport:
        agent = Agent(transport)
        agent.call("version")
        results["one agent call, warm connection (version)"] = [
            timed(lambda: agent.call("version"))[0] for _ in range(30)
        ]
        results["one exec, warm connection (true)"] = [
            timed(lambda: transport.run(Command.of("true")))[0] for _ in range(30)
        ]
        floor = []
        script = (
            'set -e; u="$1"; useradd --system --no-create-home "$u"; mkdir -p "/var/www/$u";'
            ' echo "<h1>$u</h1>" > "/var/www/$u/index.html"; chown -R "$u" "/var/www/$u";'
            ' printf "server { listen 80; server_name %s.floor; root /var/www/%s; }\\n" "$u" "$u"'
            ' > "/etc/nginx/sites-enabled/$u.conf"; nginx -t -q; systemctl reload nginx'
        )
        for n in range(runs):
            user = f"floor{n}"
            seconds, _ = timed(
                lambda user=user: (
                    transport.run(Command.of("sh", "-c", script, "sh", user)),
                    wait_served(vps.ip_address, f"{user}.floor", f"<h1>{user}</h1>"),
                )
            )
            floor.append(seconds)
        results["one-exec floor: user + file + vhost + reload, until served"] = floor

    tenant, issued = tenant_create(slug="bench", tier="enterprise", owner_email="bench@localhost")
    client = APIClient(HTTP_HOST="localhost")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")

    def create(domain, site_type):
        response = client.post("/api/v1/sites", {"domain": domain, "type": site_type}, format="json")
        assert response.status_code == 202, response.content
        run_op(response.json()["operation"]["id"])
        wait_served(vps.ip_address, domain, domain)
        return Site.objects.get(pk=response.json()["id"])

    static = []
    for n in range(runs):
        seconds, site = timed(lambda n=n: create(f"static{n}.bench", "static"))
        static.append(seconds)
    results["static site: API call to page served"] = static

    reapply = []
    for _ in range(runs):
        with transaction.atomic():
            op = operation_create(
                kind="site.deploy", tenant=tenant, target=site, params={"release": site.current_release}
            )
        seconds, done = timed(lambda op=op: run_op(op.id))
        assert done.result["changes"] == 0, done.result
        reapply.append(seconds)
    results["re-apply an unchanged static site (no changes)"] = reapply

    results["PHP site with database: API call to page served"] = [
        timed(lambda n=n: create(f"php{n}.bench", "php"))[0] for n in range(min(runs, 3))
    ]

    ssl = []
    with override_settings(
        ACME_DIRECTORY_URL=pebble.directory_url,
        ACME_CA_BUNDLE_FILE=str(pebble.ca_bundle),
        LOCAL_DNS_MANAGEMENT_URL=pebble.dns_management_url,
    ):
        for n in range(min(runs, 3)):
            site = Site.objects.get(domain=f"static{n}.bench")
            response = client.post(f"/api/v1/sites/{site.pk}/ssl")
            ssl.append(timed(lambda response=response: run_op(response.json()["operation"]["id"]))[0])
    results["certificate from the local ACME CA (HTTP-01), live in nginx"] = ssl


if __name__ == "__main__":
    main()
