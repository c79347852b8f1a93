"""Alert rules proven end to end (issue 18, part 4): a fault on a real VPS → a real Prometheus
scraping it → a real Alertmanager → CHOM's webhook → an Alert row in CHOM and the right people
told (through a real notification worker); the fault removed → the alert resolved.

Prometheus loads test copies of CHOM's rules (tests/support/alert_rules.py: the same expressions
and labels, every `for` FOR_SECONDS) and scrapes every second, so each journey takes seconds;
promtool's unit tests cover the real durations, bench/alert_latency.py measures them.

One VPS, bootstrapped once by CHOM's own operation, serves every journey of this module (a boot
and bootstrap costs more than a journey): the module's stack holds it, CHOM's live server, the
monitoring stack and a notification worker for the whole module. pytest-django empties the
database after each test; Django's serialized rollback loads the module's rows (the VPS, the fleet's
SSH key, a tenant) again before the next. Each journey leaves the VPS as it found it.

Faults go through CHOM's own path to a VPS: its SSH transport and the agent's `service-ensure`.
"""

import json
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from pytest_django.live_server_helper import LiveServer
from rest_framework.test import APIClient

from chom.models import WorkerHeartbeat
from chom.operations import operation_execute
from chom.services import tenant_create
from devstack.monitoring import start_monitoring
from fleet import localfleet, services
from fleet.models import Vps
from fleet.remote.agent_client import Agent
from observability import targets
from observability.models import Alert, Notification
from observability.notifications import channel_create
from observability.services import webhook_hash
from sites.models import Site
from tests.e2e.test_push_deploy import SlackReceiver
from tests.support.alert_rules import fast_rules
from tests.support.fleet import vps_name
from tests.support.git import GitServer, git_repo
from tests.support.processes import celery_worker_argv, running, wait_for, worker_env

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

FOR_SECONDS = 2
FIRE_WITHIN = 60  # issue 18: the fault → the alert in CHOM within a minute
RESOLVE_WITHIN = 60
NOTIFY_WITHIN = 30
STAFF_EMAIL = "oncall@chom.test"
OWNER_EMAIL = "owner@alerts.test"
NODE_EXPORTER = "prometheus-node-exporter"
MARIADB = "mariadb"


def _mysqld_listed(vps: Vps) -> bool:
    labels = [group["labels"] for group in targets.sd_target_groups()]
    return any(label.get("vps") == vps.name and label.get("kind") == "mysqld" for label in labels)


# --- the module's stack: CHOM, Prometheus + Alertmanager, a notification worker, one VPS -------


@dataclass
class Stack:
    vps: Vps
    prometheus_url: str
    gateway: str
    staff_hook: SlackReceiver
    staff_hook_url: str
    tenant: object
    owner_token: str
    folder: Path


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, fleet_network, tmp_path_factory):
    """Everything the journeys share, for the whole module. CHOM is served by pytest-django's
    live server class: the `live_server` fixture is per test."""
    network, base, subnet = fleet_network
    folder = tmp_path_factory.mktemp("alert-journeys")
    staff_hook = SlackReceiver("127.0.0.1")
    staff_hook_url = staff_hook.url + staff_hook.path
    sd_token, hook_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    fleet = {
        "CHOM_LOCAL_PROVIDER": True,
        "LOCAL_FLEET_DIR": str(base),
        "LOCAL_FLEET_BRIDGE": network.name,
        "LOCAL_FLEET_SUBNET": subnet,
        "FLEET_MONITORING_SOURCE": network.gateway,
        "REPOSITORY_ALLOWED_NETWORKS": [f"{subnet}.0/24"],  # the tenant's receiver is on the bridge
        "PROMETHEUS_SD_TOKEN": sd_token,
        "ALERTMANAGER_WEBHOOK_TOKEN": hook_token,
        "ALERT_EMAILS": [STAFF_EMAIL],
        "ALERT_WEBHOOK_URLS": [staff_hook_url],
    }
    vps = None
    with django_db_blocker.unblock(), override_settings(**fleet):
        server = LiveServer("127.0.0.1:0")
        try:
            env, stop_monitoring, _ = start_monitoring(
                folder / "monitoring",
                chom_url=server.url,
                listen_ip=network.gateway,
                sd_token=sd_token,
                webhook_token=hook_token,
                rules=fast_rules(for_seconds=FOR_SECONDS),
            )
            try:
                with override_settings(
                    PROMETHEUS_URL=env["PROMETHEUS_URL"], ALERTMANAGER_URL=env["ALERTMANAGER_URL"]
                ):
                    vps = _bootstrapped_vps("e2e-alerts")
                    tenant, issued = tenant_create(slug="alerts", tier="pro", owner_email=OWNER_EMAIL)
                    with _rows_kept_between_tests(), _notify_worker(folder / "notify-worker.log", fleet):
                        yield Stack(
                            vps=vps,
                            prometheus_url=env["PROMETHEUS_URL"],
                            gateway=network.gateway,
                            staff_hook=staff_hook,
                            staff_hook_url=staff_hook_url,
                            tenant=tenant,
                            owner_token=issued.plaintext,
                            folder=folder,
                        )
            finally:
                stop_monitoring()
        finally:
            server.stop()
            staff_hook.close()
            if vps is not None and (machine := localfleet.vps_load(base / vps.name)):
                localfleet.vps_destroy(machine)
            # As after each transactional test (set-up may have failed before any ran).
            call_command("flush", verbosity=0, interactive=False)


@contextmanager
def _rows_kept_between_tests():
    """Before each `serialized_rollback` test Django loads the rows it serialized when it made the
    test database (what migrations created): serialize this module's rows in their place."""
    before = getattr(connection, "_test_serialized_contents", None)
    connection._test_serialized_contents = connection.creation.serialize_db_to_string()
    try:
        yield
    finally:
        if before is None:
            del connection._test_serialized_contents
        else:
            connection._test_serialized_contents = before


def _bootstrapped_vps(name: str) -> Vps:
    """A shared VPS created and bootstrapped by CHOM's own operation (as the `make_vps` fixture)."""
    with transaction.atomic():
        vps, op = services.vps_create(name=vps_name(name), provider="local", kind="shared")
    operation_execute(operation_id=op.id)
    op.refresh_from_db()
    assert op.status == "succeeded", op.error
    vps.refresh_from_db()
    return vps


@contextmanager
def _notify_worker(log: Path, fleet: dict):
    """CHOM's notification worker (the `notify` queue, as chom-notify@ runs in production), with
    the staff recipients and allowed networks of this module's settings."""
    env = worker_env(
        {
            "ALERT_EMAILS": ",".join(fleet["ALERT_EMAILS"]),
            "ALERT_WEBHOOK_URLS": ",".join(fleet["ALERT_WEBHOOK_URLS"]),
            "REPOSITORY_ALLOWED_NETWORKS": ",".join(fleet["REPOSITORY_ALLOWED_NETWORKS"]),
        }
    )
    argv = celery_worker_argv("e2e-alerts-notify", queues="notify") + ["--purge"]
    with running(argv, env=env, log=log):
        try:
            wait_for(
                WorkerHeartbeat.objects.filter(hostname__startswith="e2e-alerts-notify@").exists,
                timeout=60,
                what="the notification worker to start",
            )
        except TimeoutError:
            pytest.fail(f"the notification worker did not start:\n{log.read_text()[-3000:]}")
        yield


# --- journey steps ---------------------------------------------------------------------------------


def _service(vps: Vps, name: str, *, running: bool) -> str:
    """Stop or start a unit on the VPS through CHOM's transport and agent; returns its state."""
    with services.transport_for(vps) as transport:
        return Agent(transport).call("service-ensure", {"name": name, "running": running}).data["state"]


def _query(stack: Stack, promql: str) -> list[dict]:
    answer = requests.get(f"{stack.prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    return answer.json()["data"]["result"]


def _scraped(stack: Stack, promql: str, what: str) -> None:
    """Wait until PROMQL is 1 in Prometheus: the metric the rule reads is there and healthy."""
    wait_for(
        lambda: [r["value"][1] for r in _query(stack, promql)] == ["1"], timeout=60, interval=0.5, what=what
    )


def _no_firing(name: str, **labels) -> None:
    wait_for(lambda: _firing(name, **labels) is None, timeout=RESOLVE_WITHIN, what=f"no {name} firing")


def _firing(name: str, **labels) -> Alert | None:
    alerts = Alert.objects.filter(name=name, status=Alert.Status.FIRING)
    for key, value in labels.items():
        alerts = alerts.filter(**{f"labels__{key}": value})
    return alerts.first()


def _fired(name: str, since: float, **labels) -> tuple[Alert, float]:
    """The firing row, and seconds from SINCE (the fault in place) to CHOM holding it."""
    try:
        alert = wait_for(lambda: _firing(name, **labels), timeout=FIRE_WITHIN, interval=0.1, what=name)
    except TimeoutError:
        pytest.fail(f"{name} {labels} not in CHOM {FIRE_WITHIN}s after the fault; alerts: {_alerts()}")
    return alert, time.monotonic() - since


def _resolved(alert: Alert, since: float) -> float:
    def done() -> bool:
        alert.refresh_from_db()
        return alert.status == Alert.Status.RESOLVED

    wait_for(done, timeout=RESOLVE_WITHIN, interval=0.1, what=f"{alert.name} resolved")
    assert alert.resolved_at is not None
    return time.monotonic() - since


def _alerts() -> list[str]:
    return [f"{a.name} {a.status} {a.labels}" for a in Alert.objects.all()]


def _recipients(alert: Alert, event: str) -> set[tuple[str, str]]:
    return set(Notification.objects.filter(alert=alert, event=event).values_list("channel", "recipient"))


def _staff(stack: Stack) -> set[tuple[str, str]]:
    """What ALERT_EMAILS and ALERT_WEBHOOK_URLS make of every alert: its staff recipients."""
    return {
        (Notification.Channel.EMAIL, STAFF_EMAIL),
        (Notification.Channel.WEBHOOK, webhook_hash(stack.staff_hook_url)),
    }


def _staff_told(stack: Stack, alert: Alert, event: str, subject: str) -> None:
    """The worker told staff (email and webhook) of EVENT; the staff webhook got SUBJECT."""

    def sent() -> bool:
        rows = Notification.objects.filter(alert=alert, event=event, status=Notification.Status.SENT)
        return set(rows.values_list("channel", "recipient")) >= _staff(stack)

    wait_for(sent, timeout=NOTIFY_WITHIN, what=f"staff told of {alert.name} {event}")
    texts = [m["body"]["text"] for m in stack.staff_hook.accepted]
    assert any(text.startswith(f"*{subject}*") for text in texts), texts


# --- the journeys ----------------------------------------------------------------------------------


def test_it_raises_vps_down_when_the_node_exporter_stops_and_tells_staff_only(stack):
    vps = stack.vps
    _scraped(stack, f'up{{job="chom-fleet", vps="{vps.name}", kind="node"}}', "node exporter scraped")
    _no_firing("VpsDown", vps=vps.name)

    assert _service(vps, NODE_EXPORTER, running=False) != "active"
    stopped = time.monotonic()
    try:
        alert, seconds = _fired("VpsDown", stopped, vps=vps.name)
        print(f"\nnode exporter stopped -> VpsDown in CHOM: {seconds:.1f}s (rule for: {FOR_SECONDS}s)")
        assert seconds <= FIRE_WITHIN
        assert alert.source == "alertmanager" and alert.severity == Alert.Severity.CRITICAL
        assert vps.name in alert.summary
        # A shared VPS belongs to no tenant: staff hear of it, no tenant's owner does.
        assert alert.tenant is None and alert.site is None
        assert _recipients(alert, Notification.Event.FIRING) == _staff(stack)
        _staff_told(stack, alert, Notification.Event.FIRING, f"[CHOM] FIRING: VpsDown (vps={vps.name})")
    finally:
        assert _service(vps, NODE_EXPORTER, running=True) == "active"
    started = time.monotonic()
    seconds = _resolved(alert, started)
    print(f"node exporter started -> VpsDown resolved in CHOM: {seconds:.1f}s")
    assert _recipients(alert, Notification.Event.RESOLVED) == _staff(stack)
    _staff_told(stack, alert, Notification.Event.RESOLVED, f"[CHOM] RESOLVED: VpsDown (vps={vps.name})")
    assert OWNER_EMAIL not in {r for _, r in Notification.objects.values_list("channel", "recipient")}


def test_it_raises_mariadb_down_when_mariadb_stops_and_resolves_when_it_is_back(stack):
    vps = stack.vps
    assert _mysqld_listed(vps), "bootstrap enabled the MariaDB exporter: CHOM lists its target"
    _scraped(stack, f'mysql_up{{job="chom-fleet", vps="{vps.name}"}}', "MariaDB answering its exporter")
    _no_firing("MariaDBDown", vps=vps.name)

    assert _service(vps, MARIADB, running=False) != "active"
    stopped = time.monotonic()
    try:
        alert, seconds = _fired("MariaDBDown", stopped, vps=vps.name)
        print(f"\nmariadb stopped -> MariaDBDown in CHOM: {seconds:.1f}s (rule for: {FOR_SECONDS}s)")
        assert seconds <= FIRE_WITHIN
        assert alert.severity == Alert.Severity.CRITICAL and vps.name in alert.summary
        assert alert.tenant is None
        _staff_told(stack, alert, Notification.Event.FIRING, f"[CHOM] FIRING: MariaDBDown (vps={vps.name})")
    finally:
        assert _service(vps, MARIADB, running=True) == "active"
    seconds = _resolved(alert, time.monotonic())
    print(f"mariadb started -> MariaDBDown resolved in CHOM: {seconds:.1f}s")


def test_it_raises_site_down_for_a_failing_site_and_tells_its_tenants_channel(stack):
    """A PHP site deployed from git; its PHP-FPM stops, so nginx answers 502 where the uptime
    probe wants 2xx/3xx from CHOM's vhost (X-Chom-Site)."""
    receiver = SlackReceiver(stack.gateway)
    (stack.folder / "srv").mkdir(exist_ok=True)
    forge = GitServer(stack.folder / "srv", stack.gateway)
    try:
        channel_create(
            tenant=stack.tenant, kind="slack", events=["site.down"], url=receiver.url + receiver.path
        )
        site = _php_site(stack, "down.alerts.test", forge)
        fpm = f"php{site.php_version}-fpm"
        _probed_ok(stack, site.domain)
        _no_firing("SiteDown", site=site.unix_user)

        assert _service(stack.vps, fpm, running=False) != "active"
        stopped, stopped_at = time.monotonic(), time.time()
        try:
            answer = requests.get(f"http://{stack.vps.ip_address}/", headers={"Host": site.domain}, timeout=5)
            assert answer.status_code >= 500
            alert, seconds = _fired("SiteDown", stopped, site=site.unix_user)
            print(f"\nsite failing (5xx) -> SiteDown in CHOM: {seconds:.1f}s (rule for: {FOR_SECONDS}s)")
            assert alert.site == site and alert.tenant == stack.tenant
            assert (Notification.Channel.EMAIL, OWNER_EMAIL) in _recipients(alert, Notification.Event.FIRING)
            told = wait_for(
                lambda: _told(receiver, f"[CHOM] site.down {site.domain}:"),
                timeout=NOTIFY_WITHIN,
                what="the tenant's channel told site.down",
            )
            print(f"site failing -> the tenant's Slack channel told: {told['at'] - stopped_at:.1f}s")
        finally:
            assert _service(stack.vps, fpm, running=True) == "active"
        seconds = _resolved(alert, time.monotonic())
        print(f"site answering again -> SiteDown resolved in CHOM: {seconds:.1f}s")
    finally:
        forge.stop()
        receiver.close()


def _told(receiver: SlackReceiver, prefix: str) -> dict | None:
    return next((m for m in receiver.accepted if m["body"]["text"].startswith(prefix)), None)


def _php_site(stack: Stack, domain: str, forge: GitServer) -> Site:
    """The tenant's PHP site, from a repository whose page PHP renders (a new site's placeholder is
    static HTML, which would serve on without PHP)."""
    repo = stack.folder / "site"
    git_repo(repo, {"index.php": "<?php echo 'up ' . PHP_VERSION;\n"}, "v1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {stack.owner_token}")
    body = {
        "domain": domain,
        "type": "php",
        "repository": {"url": forge.publish(repo, "site.git"), "branch": "main"},
    }
    created = client.post("/api/v1/sites", body, format="json")
    assert created.status_code == 202, created.content
    operation_execute(operation_id=created.json()["operation"]["id"])
    site = Site.objects.get(pk=created.json()["id"])
    assert site.vps_id == stack.vps.pk and site.status == Site.Status.ACTIVE, site.status
    page = requests.get(f"http://{stack.vps.ip_address}/", headers={"Host": domain}, timeout=5)
    assert page.status_code == 200 and page.text.startswith("up "), page.text[:200]
    return site


def _probed_ok(stack: Stack, domain: str) -> None:
    """The uptime probe of DOMAIN succeeds before the fault: SiteDown then means the fault."""

    def ok() -> bool:
        results = _query(stack, "probe_success")
        return any(domain in json.dumps(r["metric"]) and r["value"][1] == "1" for r in results)

    wait_for(ok, timeout=60, interval=0.5, what=f"the uptime probe of {domain} succeeding")
