"""A real Prometheus + Alertmanager + blackbox exporter wired to CHOM, as child processes: for
`make demo` and tests.

Prometheus discovers the fleet through CHOM's http_sd endpoint, scrapes every second, evaluates
deploy/observability/alert-rules.yml (plus any extra rules) and sends alerts to Alertmanager, which
posts them to CHOM's webhook after 1 s. It also has every serving site probed by the blackbox
exporter (deploy/observability/blackbox.yml; targets from CHOM's /observability/sd/probes), as
production's job `chom-probes` does. All listen on 127.0.0.1 only; the VPSes see the host as
LISTEN_IP (the bridge gateway), which is the address their firewall must let scrape.
"""

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from devstack.processes import free_port, spawn, stop_processes, wait_http

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
READY_TIMEOUT = 20.0
ALERT_RULES = settings.BASE_DIR / "deploy" / "observability" / "alert-rules.yml"
BLACKBOX_CONFIG = settings.BASE_DIR / "deploy" / "observability" / "blackbox.yml"
PROBE_MODULE = "chom_site"


def blackbox_config(*, ca_file: str = "") -> dict:
    """Production's blackbox.yml; CA_FILE (the demo's ACME CA root) verifies the sites' https."""
    import yaml  # a development requirement: make demo and the tests have it

    config = yaml.safe_load(BLACKBOX_CONFIG.read_text())
    if ca_file:
        config["modules"][PROBE_MODULE]["http"]["tls_config"]["ca_file"] = ca_file
    return config


def probe_job(*, chom: str, sd_token: str, blackbox: str, every: str) -> dict:
    """Job `chom-probes`, as in deploy/observability/prometheus.yml: each site URL is probed at
    its VPS's address with the domain as `hostname` (Host header and TLS server name)."""
    return {
        "job_name": "chom-probes",
        "metrics_path": "/probe",
        "params": {"module": [PROBE_MODULE]},
        "http_sd_configs": [
            {
                "url": f"{chom}/observability/sd/probes",
                "refresh_interval": every,
                "authorization": {"type": "Bearer", "credentials": sd_token},
            }
        ],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["domain"], "target_label": "__param_hostname"},
            {
                "source_labels": ["scheme", "domain"],
                "separator": "://",
                "target_label": "instance",
                "replacement": "${1}/",
            },
            {"target_label": "__address__", "replacement": blackbox},
        ],
    }


def alertmanager_config(*, chom_url: str, webhook_token: str) -> dict:
    return {
        "route": {
            "receiver": "chom",
            "group_by": ["alertname", "vps", "site"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1m",
        },
        "receivers": [
            {
                "name": "chom",
                "webhook_configs": [
                    {
                        "url": f"{chom_url.rstrip('/')}/webhooks/alertmanager",
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": webhook_token}},
                    }
                ],
            }
        ],
    }


def prometheus_config(
    *,
    chom_url: str,
    sd_token: str,
    alertmanager: str,
    rule_files: list[str],
    interval: int = 1,
    blackbox: str = "127.0.0.1:9115",
) -> dict:
    """INTERVAL seconds between scrapes, rule evaluations and target refreshes: 1 in tests (alerts
    within seconds), a realistic 10 in `make demo` (CHOM is not polled twice a second). BLACKBOX:
    the blackbox exporter (host:port) that job `chom-probes` sends the sites' probes to."""
    chom = chom_url.rstrip("/")
    host = chom.split("://", 1)[1].split("/", 1)[0]
    every = f"{interval}s"
    return {
        "global": {
            "scrape_interval": every,
            "evaluation_interval": every,
            "scrape_timeout": f"{min(interval, 5)}s",
        },
        "rule_files": rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {
                "job_name": "chom-fleet",
                "http_sd_configs": [
                    {
                        "url": f"{chom}/observability/sd/targets",
                        "refresh_interval": every,
                        # Prometheus 2.42's http_sd drops the default "Bearer" type: say it.
                        "authorization": {"type": "Bearer", "credentials": sd_token},
                    }
                ],
            },
            probe_job(chom=chom, sd_token=sd_token, blackbox=blackbox, every=every),
            {"job_name": "chom", "static_configs": [{"targets": [host]}]},
        ],
    }


def start_monitoring(
    folder: Path,
    *,
    chom_url: str,
    listen_ip: str,
    sd_token: str,
    webhook_token: str,
    extra_rules: str = "",
    rules: str = "",
    interval: int = 1,
    probe_ca_file: str = "",
) -> tuple[dict[str, str], Callable[[], None], list[str]]:
    """Start the blackbox exporter, Alertmanager, then Prometheus. Returns (env for CHOM, stop,
    description lines). RULES, when given, is a rules file's YAML used instead of CHOM's
    alert-rules.yml (tests load a copy whose `for` durations are seconds); EXTRA_RULES is one added
    to them (tests use an always-firing rule); INTERVAL: see prometheus_config; PROBE_CA_FILE: the
    CA the sites' certificates come from (the demo's pebble), when it is not a public one."""
    for binary in (PROMETHEUS, ALERTMANAGER, BLACKBOX):
        if not shutil.which(binary):
            raise FileNotFoundError(
                f"{binary} is missing: apt-get install prometheus prometheus-alertmanager"
                " prometheus-blackbox-exporter"
            )
    folder.mkdir(parents=True, exist_ok=True)
    am_port, prom_port, bb_port = free_port(), free_port(), free_port()
    am_url, prom_url = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{prom_port}"
    bb_url = f"http://127.0.0.1:{bb_port}"
    (folder / "blackbox.yml").write_text(json.dumps(blackbox_config(ca_file=probe_ca_file), indent=2))
    # JSON is YAML: no YAML library needed to write either config.
    (folder / "alertmanager.yml").write_text(
        json.dumps(alertmanager_config(chom_url=chom_url, webhook_token=webhook_token), indent=2)
    )
    rule_files = [str(ALERT_RULES)]
    if rules:
        (folder / "rules.yml").write_text(rules)
        rule_files = [str(folder / "rules.yml")]
    if extra_rules:
        (folder / "extra-rules.yml").write_text(extra_rules)
        rule_files.append(str(folder / "extra-rules.yml"))
    prom_config = prometheus_config(
        chom_url=chom_url,
        sd_token=sd_token,
        alertmanager=f"127.0.0.1:{am_port}",
        rule_files=rule_files,
        interval=interval,
        blackbox=f"127.0.0.1:{bb_port}",
    )
    (folder / "prometheus.yml").write_text(json.dumps(prom_config, indent=2))
    processes: list[subprocess.Popen] = []
    try:
        bb_log = folder / "blackbox.log"
        processes.append(
            spawn(
                [BLACKBOX, f"--config.file={folder / 'blackbox.yml'}",
                 f"--web.listen-address=127.0.0.1:{bb_port}"],
                bb_log,
            )
        )  # fmt: skip
        wait_http(f"{bb_url}/-/healthy", processes[-1], bb_log)
        am_log = folder / "alertmanager.log"
        processes.append(
            spawn(
                [ALERTMANAGER, f"--config.file={folder / 'alertmanager.yml'}",
                 f"--storage.path={folder / 'alertmanager-data'}",
                 f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                am_log,
            )
        )  # fmt: skip
        wait_http(f"{am_url}/-/ready", processes[-1], am_log)
        prom_log = folder / "prometheus.log"
        processes.append(
            spawn(
                [PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={folder / 'prometheus-data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--web.enable-lifecycle",
                 "--rules.alert.resend-delay=1s"],
                prom_log,
            )
        )  # fmt: skip
        wait_http(f"{prom_url}/-/ready", processes[-1], prom_log)
    except BaseException:
        stop_processes(processes)
        raise
    env = {
        "PROMETHEUS_URL": prom_url,
        "ALERTMANAGER_URL": am_url,
        "PROMETHEUS_SD_TOKEN": sd_token,
        "ALERTMANAGER_WEBHOOK_TOKEN": webhook_token,
        "FLEET_MONITORING_SOURCE": listen_ip,
        "BLACKBOX_URL": bb_url,  # not a CHOM setting: for a person (or test) asking it directly
    }
    description = [
        f"Prometheus: {prom_url} (targets from {chom_url.rstrip('/')}/observability/sd/targets, "
        f"every {interval}s)",
        f"Alertmanager: {am_url} (alerts to {chom_url.rstrip('/')}/webhooks/alertmanager)",
        f"Blackbox exporter: {bb_url} (uptime probes of every serving site, targets from "
        f"{chom_url.rstrip('/')}/observability/sd/probes; try {bb_url}/probe?module={PROBE_MODULE}"
        "&target=http://<vps ip>/&hostname=<domain>&debug=true)",
    ]
    return env, lambda: stop_processes(processes), description
