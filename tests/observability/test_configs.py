"""The observability stack's configs are valid for the real tools (promtool, amtool)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.demo import DEMO_SCRAPE_SECONDS
from devstack.monitoring import alertmanager_config, prometheus_config

pytestmark = pytest.mark.real  # real nginx/php-fpm/MariaDB/PostgreSQL/promtool (tests/support/real.py)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
PROMTOOL, AMTOOL = shutil.which("promtool"), shutil.which("amtool")
BLACKBOX = shutil.which("prometheus-blackbox-exporter")
needs_promtool = pytest.mark.skipif(not PROMTOOL, reason="promtool not installed (apt prometheus)")
needs_amtool = pytest.mark.skipif(not AMTOOL, reason="amtool not installed (apt prometheus-alertmanager)")


def _check(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _with_secrets(tmp_path: Path, *names: str) -> Path:
    for name in names:
        shutil.copy(DEPLOY / name, tmp_path / name)
    (tmp_path / "secrets").mkdir()
    for token in ("chom-sd-token", "chom-metrics-token", "chom-webhook-token"):
        (tmp_path / "secrets" / token).write_text("token\n")
    return tmp_path


@needs_promtool
def test_it_ships_alert_rules_that_promtool_accepts():
    out = _check(PROMTOOL, "check", "rules", str(DEPLOY / "alert-rules.yml"))
    assert "SUCCESS: 14 rules found" in out


@needs_promtool
def test_it_ships_a_prometheus_config_that_promtool_accepts(tmp_path):
    folder = _with_secrets(tmp_path, "prometheus.yml", "alert-rules.yml")
    _check(PROMTOOL, "check", "config", str(folder / "prometheus.yml"))
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    [sd] = config["scrape_configs"][0]["http_sd_configs"]
    assert sd["url"].endswith("/observability/sd/targets") and "credentials_file" in sd["authorization"]


@pytest.mark.skipif(not BLACKBOX, reason="apt-get install prometheus-blackbox-exporter")
def test_it_ships_a_blackbox_config_the_exporter_accepts(tmp_path):
    from devstack.monitoring import blackbox_config

    local = tmp_path / "blackbox.json"
    local.write_text(json.dumps(blackbox_config(ca_file=str(tmp_path / "ca.pem"))))
    for path in (DEPLOY / "blackbox.yml", local):
        _check(BLACKBOX, "--config.check", f"--config.file={path}")
    broken = tmp_path / "broken.yml"
    broken.write_text((DEPLOY / "blackbox.yml").read_text().replace("follow_redirects", "follow_redirect"))
    proc = subprocess.run(
        [BLACKBOX, "--config.check", f"--config.file={broken}"], capture_output=True, timeout=60
    )
    assert b"field follow_redirect not found" in proc.stderr  # the check is strict: it can fail
    [probes] = [j for j in yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
                if j["job_name"] == "chom-probes"]  # fmt: skip
    assert probes["http_sd_configs"][0]["url"].endswith("/observability/sd/probes")
    assert probes["params"]["module"] == list(
        yaml.safe_load((DEPLOY / "blackbox.yml").read_text())["modules"]
    )


@needs_amtool
def test_it_ships_an_alertmanager_config_that_amtool_accepts(tmp_path):
    folder = _with_secrets(tmp_path, "alertmanager.yml")
    _check(AMTOOL, "check-config", str(folder / "alertmanager.yml"))
    [hook] = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())["receivers"][0]["webhook_configs"]
    assert hook["url"].endswith("/webhooks/alertmanager") and hook["send_resolved"] is True


@needs_promtool
@needs_amtool
@pytest.mark.parametrize("interval", [1, DEMO_SCRAPE_SECONDS])
def test_it_generates_local_stack_configs_the_tools_accept(tmp_path, interval):
    prom = prometheus_config(
        chom_url="http://127.0.0.1:8000",
        sd_token="t",
        alertmanager="127.0.0.1:9093",
        rule_files=[str(DEPLOY / "alert-rules.yml")],
        interval=interval,
    )
    (tmp_path / "prometheus.yml").write_text(json.dumps(prom))
    (tmp_path / "alertmanager.yml").write_text(
        json.dumps(alertmanager_config(chom_url="http://x", webhook_token="t"))
    )
    _check(PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml"))
    _check(AMTOOL, "check-config", str(tmp_path / "alertmanager.yml"))


def test_the_demo_polls_chom_at_a_realistic_interval():
    """make demo's Prometheus must not scrape CHOM and its target list twice a second."""
    prom = prometheus_config(
        chom_url="http://127.0.0.1:8000",
        sd_token="t",
        alertmanager="x:1",
        rule_files=[],
        interval=DEMO_SCRAPE_SECONDS,
    )
    assert 5 <= DEMO_SCRAPE_SECONDS <= 15
    assert prom["global"]["scrape_interval"] == f"{DEMO_SCRAPE_SECONDS}s"
    assert prom["scrape_configs"][0]["http_sd_configs"][0]["refresh_interval"] == f"{DEMO_SCRAPE_SECONDS}s"


def test_it_keeps_loki_logs_between_7_and_30_days():
    config = yaml.safe_load((DEPLOY / "loki-config.yml").read_text())
    hours = int(config["limits_config"]["retention_period"].rstrip("h"))
    assert 7 * 24 <= hours <= 30 * 24
    assert config["compactor"]["retention_enabled"] is True


def test_it_runs_loki_multi_tenant_so_each_vps_writes_only_its_own_tenant():
    assert yaml.safe_load((DEPLOY / "loki-config.yml").read_text())["auth_enabled"] is True
    site = json.loads((DEPLOY / "dashboards" / "site.json").read_text())
    sources = [p["datasource"] for p in site["panels"]] + [
        t["datasource"] for p in site["panels"] for t in p["targets"]
    ]
    assert {s["uid"] for s in sources if s["type"] == "loki"} == {"__LOKI__"}


def test_it_ships_parseable_grafana_and_compose_files():
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/chom.yml").read_text())
    # Loki's datasources are per VPS tenant, created by CHOM's Grafana sync (test_grafana.py).
    assert {d["uid"] for d in datasources["datasources"]} == {"prometheus"}
    compose = yaml.safe_load((DEPLOY.parent.parent / "docker-compose.yml").read_text())
    monitoring = {"prometheus", "alertmanager", "blackbox", "loki", "grafana"}
    assert monitoring <= set(compose["services"])
    for name in monitoring:
        for volume in compose["services"][name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./") and "/secrets/" not in source:
                assert (DEPLOY.parent.parent / source).exists(), source
    for name in ("fleet", "vps", "site"):
        dashboard = json.loads((DEPLOY / "dashboards" / f"{name}.json").read_text())
        assert dashboard["uid"] and dashboard["panels"]
