"""Real Prometheus and Alertmanager (Debian's packages) wired to CHOM running in a live server:
an always-firing rule reaches the webhook, is stored once, notified, and its resolution recorded."""

import shutil
import time

import pytest
import requests
from django.core import mail

from chom.services import tenant_create
from devstack.monitoring import ALERTMANAGER, PROMETHEUS, start_monitoring
from observability.models import Alert, Notification
from observability.services import notifications_deliver
from tests.support.processes import wait_for

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(
        not (shutil.which(PROMETHEUS) and shutil.which(ALERTMANAGER)),
        reason="apt-get install prometheus prometheus-alertmanager",
    ),
]

RULE = """\
groups:
  - name: test
    rules:
      - alert: AlwaysFiring
        expr: {expr}
        labels:
          severity: info
          tenant: acme
        annotations:
          summary: the test rule fires
"""


@pytest.fixture
def stack(live_server, settings, tmp_path, transactional_db):
    settings.PROMETHEUS_SD_TOKEN, settings.ALERTMANAGER_WEBHOOK_TOKEN = "sd-token", "hook-token"
    settings.ALERT_EMAILS = ["ops@chom.test"]
    started = time.monotonic()
    env, stop, description = start_monitoring(
        tmp_path,
        chom_url=live_server.url,
        listen_ip="127.0.0.1",
        sd_token="sd-token",
        webhook_token="hook-token",
        extra_rules=RULE.format(expr="vector(1)"),
    )
    print(f"\nmonitoring stack up in {time.monotonic() - started:.2f}s: {description}")
    yield env, tmp_path, started
    stop()


def _prometheus(env, path, **params):
    return requests.get(f"{env['PROMETHEUS_URL']}{path}", params=params, timeout=5).json()


def test_it_delivers_a_firing_rule_to_chom_once_and_records_its_resolution(stack):
    env, folder, started = stack
    tenant_create(slug="acme", tier="pro", owner_email="alice@acme.test")

    alert = wait_for(
        lambda: Alert.objects.filter(name="AlwaysFiring").first(), timeout=30, interval=0.1, what="alert"
    )
    print(f"rule -> CHOM webhook: {time.monotonic() - started:.2f}s after start")
    assert alert.source == "alertmanager" and alert.status == "firing" and alert.tenant.slug == "acme"
    assert alert.summary == "the test rule fires" and alert.labels["severity"] == "info"
    time.sleep(3)  # Alertmanager repeats the group every second meanwhile: still one row
    assert Alert.objects.filter(name="AlwaysFiring").count() == 1
    assert set(Notification.objects.values_list("recipient", "event")) == {
        ("ops@chom.test", "firing"),
        ("alice@acme.test", "firing"),
    }
    notifications_deliver()
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@acme.test", "ops@chom.test"]

    # The rule stops firing: Prometheus sends it resolved, Alertmanager forwards it.
    (folder / "extra-rules.yml").write_text(RULE.format(expr="vector(1) < 0"))
    assert requests.post(f"{env['PROMETHEUS_URL']}/-/reload", timeout=5).status_code == 200
    resolved_at = time.monotonic()
    wait_for(
        lambda: Alert.objects.filter(name="AlwaysFiring", status="resolved").exists(),
        timeout=30,
        interval=0.1,
        what="resolution",
    )
    print(f"resolution -> CHOM: {time.monotonic() - resolved_at:.2f}s after the rule changed")
    assert Alert.objects.filter(name="AlwaysFiring").count() == 1
    assert Notification.objects.filter(event="resolved").count() == 2


def test_it_is_scraped_by_prometheus_for_its_own_gauges_and_feeds_it_targets(stack):
    from fleet.models import Vps

    env, _, _ = stack

    def chom_up():
        result = _prometheus(env, "/api/v1/query", query='chom_operations_stale{job="chom"}')["data"][
            "result"
        ]
        return result and result[0]["value"][1] == "0"

    wait_for(chom_up, timeout=20, interval=0.2, what="CHOM scraped")
    Vps.objects.create(name="web1", provider="manual", ip_address="192.0.2.10", status="active")

    def discovered():
        targets = _prometheus(env, "/api/v1/targets")["data"]["activeTargets"]
        return sorted(t["labels"]["kind"] for t in targets if t["labels"]["job"] == "chom-fleet")

    kinds = wait_for(discovered, timeout=20, interval=0.2, what="targets from CHOM")
    assert kinds == ["mtail", "nginx", "node"]
