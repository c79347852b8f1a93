"""Bootstrap step "monitoring": exporters and the log shipper on each VPS, through the agent's own
subcommands only (vhost-apply, service-ensure, file-write). Idempotent: a second run changes
nothing and says so.

- nginx exporter: scrapes nginx's stub_status, served by a vhost on 127.0.0.1:8080 (the
  exporter's default scrape URI, so /etc/default/prometheus-nginx-exporter stays untouched).
- node exporter: enabled and running (the fleet's service step enables it too).
- mysqld exporter: logs in as its own MariaDB account, created by the agent's db-monitor-ensure
  ('chom_exporter'@'localhost': PROCESS, REPLICATION CLIENT, SELECT on performance_schema, 3
  connections at most) with a password generated once per VPS (fleet's MariaDBMonitorAccount,
  encrypted at rest). Its credentials, /etc/prometheus/mysqld-exporter.cnf, are 0600 for the
  account Debian runs the exporter as (prometheus); /etc/default/prometheus-mysqld-exporter points
  the exporter at them over MariaDB's unix socket. Service discovery lists it wherever that
  account exists, so MariaDBDown (mysql_up == 0) and ExporterDown can fire.
- mtail: per-site request metrics from the sites' access logs (deploy/observability/mtail),
  /etc/mtail/chom-sites.mtail and /etc/default/mtail (LOGS glob, port 3903), restarted when
  either changed.
- Promtail: /etc/promtail/config.yml from deploy/observability/promtail/config.yml.template,
  0600 for Promtail's own account (it holds the VPS's log-shipping token), pushing to CHOM's
  authenticating push endpoint (observability/log_shipping.py) at LOKI_PUSH_URL, default
  SITE_URL + "/observability". Shipping is on when LOKI_URL is set.
  Debian has no promtail package: a missing binary is reported in the bootstrap log and as a
  warning alert, never silently ignored.
"""

from collections.abc import Callable
from pathlib import Path
from string import Template

from django.conf import settings

from fleet.models import Vps
from fleet.remote.agent_client import Agent
from fleet.remote.commands import Command
from fleet.services import mariadb_monitor_account_ensure, register_bootstrap_step
from observability.log_shipping import log_credential_ensure
from observability.services import alert_raise, alert_resolve

STUB_STATUS_VHOST_NAME = "monitoring"  # the agent stores it as sites-available/chom-monitoring.conf
STUB_STATUS_VHOST = """\
# Managed by CHOM: nginx's stub_status for prometheus-nginx-exporter, loopback only.
server {
    listen 127.0.0.1:8080;
    server_name localhost;
    access_log off;
    location = /stub_status {
        stub_status;
        allow 127.0.0.1;
        deny all;
    }
    location / {
        return 404;
    }
}
"""
EXPORTER_SERVICES = ("prometheus-node-exporter", "prometheus-nginx-exporter")
PROMTAIL_CONFIG = "/etc/promtail/config.yml"
# The config holds the VPS's log-shipping token (whoever reads it can push as this VPS): 0600,
# owned by the account Grafana's package runs Promtail as (User=promtail), root where there is none.
PROMTAIL_CONFIG_MODE = "0600"
PROMTAIL_ACCOUNT = "promtail"
PROMTAIL_SERVICE = "promtail"
MYSQLD_EXPORTER_SERVICE = "prometheus-mysqld-exporter"
MYSQLD_EXPORTER_ACCOUNT = "prometheus"  # the Debian unit's User=
# Holds the account's password: whoever reads it can log in to MariaDB as the exporter.
MYSQLD_EXPORTER_CNF = "/etc/prometheus/mysqld-exporter.cnf"
MYSQLD_EXPORTER_DEFAULTS = "/etc/default/prometheus-mysqld-exporter"  # the unit's EnvironmentFile
MARIADB_SOCKET = "/run/mysqld/mysqld.sock"
PROMTAIL_TEMPLATE = settings.BASE_DIR / "deploy" / "observability" / "promtail" / "config.yml.template"
MTAIL_SERVICE = "mtail"
MTAIL_PORT = 3903
MTAIL_PROGRAM = "/etc/mtail/chom-sites.mtail"  # the Debian unit runs every program in /etc/mtail
MTAIL_DEFAULTS = "/etc/default/mtail"  # the unit's EnvironmentFile: it starts only once LOGS is set
MTAIL_SOURCE = settings.BASE_DIR / "deploy" / "observability" / "mtail" / "chom-sites.mtail"


def promtail_config(
    *, vps_name: str, push_url: str, bearer_token: str, template: Path = PROMTAIL_TEMPLATE
) -> str:
    # VPS names are [a-z0-9-] (validated), the token is [0-9A-Za-z._-] and the URL comes from
    # settings: no YAML escaping needed.
    return Template(template.read_text()).substitute(
        vps=vps_name, push_url=push_url.rstrip("/"), bearer_token=bearer_token
    )


def push_url() -> str:
    """The base of CHOM's push endpoint as the fleet reaches it (Promtail adds /loki/api/v1/push)."""
    return settings.LOKI_PUSH_URL or f"{settings.SITE_URL.rstrip('/')}/observability"


def _ensure_running(agent: Agent, service: str, log: Callable[[str], None]) -> bool:
    result = agent.call("service-ensure", {"name": service, "enabled": True, "running": True})
    if result.changed:
        log(f"  {service}: {result.data.get('state')}")
    return result.changed


def _promtail_installed(agent: Agent) -> bool:
    return agent.transport.run(Command.of("test", "-x", settings.PROMTAIL_BINARY), timeout=30).ok


def _config_owner(agent: Agent) -> str:
    exists = agent.transport.run(Command.of("id", "-u", PROMTAIL_ACCOUNT), timeout=30).ok
    return PROMTAIL_ACCOUNT if exists else "root"


def _promtail(vps: Vps, agent: Agent, log: Callable[[str], None]) -> bool:
    if not settings.LOKI_URL:
        log("  LOKI_URL unset: no log shipping configured")
        return False
    token = log_credential_ensure(vps=vps)
    config = promtail_config(vps_name=vps.name, push_url=push_url(), bearer_token=token)
    written = agent.call(
        "file-write",
        {
            "path": PROMTAIL_CONFIG,
            "content": config,
            "mode": PROMTAIL_CONFIG_MODE,
            "owner": _config_owner(agent),
        },
    ).changed
    if written:
        log(f"  wrote {PROMTAIL_CONFIG}")
    if not _promtail_installed(agent):
        message = (
            f"promtail is not installed on {vps.name} ({settings.PROMTAIL_BINARY} missing): its nginx logs "
            "do not reach Loki. Install Grafana's promtail package; the config is already in place."
        )
        log(f"  WARNING: {message}")
        alert_raise(name="promtail_missing", key=vps.name, summary=message, labels={"vps": vps.name})
        return written
    alert_resolve(name="promtail_missing", key=vps.name)
    started = _ensure_running(agent, PROMTAIL_SERVICE, log)
    if written and not started:
        _restart(agent, PROMTAIL_SERVICE, log)
    return written or started


def _restart(agent: Agent, service: str, log: Callable[[str], None]) -> None:
    """Through service-ensure: the exporters and shippers read their config at start only."""
    agent.call("service-ensure", {"name": service, "running": False})
    agent.call("service-ensure", {"name": service, "running": True})
    log(f"  restarted {service} for its new config")


def _configured_service(
    agent: Agent, service: str, files: tuple[dict, ...], log: Callable[[str], None]
) -> bool:
    """Write FILES (file-write payloads), keep SERVICE enabled and running, and restart it when a
    file changed under it. True when anything changed."""
    written = False
    for payload in files:
        if agent.call("file-write", payload).changed:
            log(f"  wrote {payload['path']}")
            written = True
    started = _ensure_running(agent, service, log)
    if written and not started:
        _restart(agent, service, log)
    return written or started


def mysqld_exporter_cnf(*, user: str, password: str) -> str:
    # The password is [A-Za-z0-9_-] (fleet.services.mariadb_monitor_account_ensure): no ini quoting.
    return (
        "# Managed by CHOM: prometheus-mysqld-exporter's MariaDB login (unix socket only).\n"
        f"[client]\nuser={user}\npassword={password}\nsocket={MARIADB_SOCKET}\n"
    )


def mysqld_exporter_defaults() -> str:
    return (
        '# Managed by CHOM (bootstrap step "monitoring"): where the exporter finds its MariaDB login.\n'
        f'ARGS="--config.my-cnf={MYSQLD_EXPORTER_CNF}"\n'
    )


def _mysqld_exporter(vps: Vps, agent: Agent, log: Callable[[str], None]) -> bool:
    account = mariadb_monitor_account_ensure(vps=vps)
    result = agent.call("db-monitor-ensure", {"user": account.USER, "password": account.password})
    if result.changed:
        log(f"  MariaDB account {account.USER}@localhost for the mysqld exporter")
    cnf = mysqld_exporter_cnf(user=account.USER, password=account.password)
    owner = MYSQLD_EXPORTER_ACCOUNT
    files = (
        {"path": MYSQLD_EXPORTER_CNF, "content": cnf, "mode": "0600", "owner": owner, "group": owner},
        {"path": MYSQLD_EXPORTER_DEFAULTS, "content": mysqld_exporter_defaults(), "mode": "0644"},
    )
    return _configured_service(agent, MYSQLD_EXPORTER_SERVICE, files, log) or result.changed


def mtail_defaults() -> str:
    # A glob, read again every 250 ms: a new site's log is followed without touching mtail.
    return (
        '# Managed by CHOM (bootstrap step "monitoring"): per-site request metrics for Prometheus.\n'
        "LOGS=/var/log/chom/*/access.log\n"
        f"PORT={MTAIL_PORT}\n"
    )


def _mtail(vps: Vps, agent: Agent, log: Callable[[str], None]) -> bool:
    """mtail turns every site's access log into request, byte and latency metrics (the program:
    deploy/observability/mtail/chom-sites.mtail). Its account reads the logs through site-ensure's
    log ACL (sites.services.METRICS_LOG_READERS)."""
    files = (
        {"path": MTAIL_PROGRAM, "content": MTAIL_SOURCE.read_text(), "mode": "0644"},
        {"path": MTAIL_DEFAULTS, "content": mtail_defaults(), "mode": "0644"},
    )
    return _configured_service(agent, MTAIL_SERVICE, files, log)


@register_bootstrap_step("monitoring")
def monitoring_bootstrap(*, vps: Vps, agent: Agent, log: Callable[[str], None]) -> bool:
    changed = agent.call(
        "vhost-apply", {"name": STUB_STATUS_VHOST_NAME, "content": STUB_STATUS_VHOST}
    ).changed
    if changed:
        log("  nginx stub_status on 127.0.0.1:8080")
    for service in EXPORTER_SERVICES:
        changed |= _ensure_running(agent, service, log)
    changed |= _mysqld_exporter(vps, agent, log)
    changed |= _mtail(vps, agent, log)
    changed |= _promtail(vps, agent, log)
    return changed
