"""Bootstrap step "monitoring": exporters and the log shipper on each VPS, through the agent's own
subcommands only (vhost-apply, service-ensure, file-write). Idempotent: a second run changes
nothing and says so.

- nginx exporter: scrapes nginx's stub_status, served by a vhost on 127.0.0.1:8080 (the
  exporter's default scrape URI, so /etc/default/prometheus-nginx-exporter stays untouched).
- node exporter: enabled and running (the fleet's service step enables it too).
- mysqld exporter: left disabled. It needs a MariaDB account with PROCESS, REPLICATION CLIENT and
  SELECT on performance_schema; the agent's db-ensure only grants on one database, so CHOM cannot
  create it yet. Service discovery lists the exporter only where it runs (enabled by hand).
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
from fleet.services import register_bootstrap_step
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
PROMTAIL_TEMPLATE = settings.BASE_DIR / "deploy" / "observability" / "promtail" / "config.yml.template"


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
        # Promtail reads its config at start only: restart through service-ensure.
        agent.call("service-ensure", {"name": PROMTAIL_SERVICE, "running": False})
        agent.call("service-ensure", {"name": PROMTAIL_SERVICE, "running": True})
        log("  restarted promtail for the new config")
    return written or started


@register_bootstrap_step("monitoring")
def monitoring_bootstrap(*, vps: Vps, agent: Agent, log: Callable[[str], None]) -> bool:
    changed = agent.call(
        "vhost-apply", {"name": STUB_STATUS_VHOST_NAME, "content": STUB_STATUS_VHOST}
    ).changed
    if changed:
        log("  nginx stub_status on 127.0.0.1:8080")
    for service in EXPORTER_SERVICES:
        changed |= _ensure_running(agent, service, log)
    log("  mysqld exporter left disabled: CHOM cannot create its MariaDB account yet")
    changed |= _promtail(vps, agent, log)
    return changed
