"""Reads from the monitoring stack, as `[timestamp, value]` series with units.

VPS metrics come from the node exporter through Prometheus. Site metrics too: mtail on each VPS
turns every site's nginx access log into request counters and a latency histogram
(deploy/observability/mtail/chom-sites.mtail, scraped as kind="mtail"), so they work without
Loki. Loki serves only a site's log lines.

Every selector is built here from CHOM's own rows (VPS name, site unix user): nothing a user
types becomes a label matcher, and the `site` label is the log's directory on the VPS, never a
field a client wrote. Every Loki query goes to the tenant of the site's VPS, so lines another
VPS pushed are never read for this site. The user's log `query` is a plain-text line filter, quoted.
"""

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from fleet.models import Vps
from observability.clients import loki, prometheus
from observability.clients.prometheus import Series
from sites.models import Site

# range name -> (seconds, step seconds): at most ~170 points per series.
RANGES: dict[str, tuple[int, int]] = {
    "15m": (900, 15),
    "1h": (3600, 60),
    "6h": (21600, 300),
    "24h": (86400, 900),
    "7d": (604800, 3600),
}
LOG_LIMIT_MAX = 1000
# LogQL `pattern` for the combined prefix of CHOM's access log (sites/configs.py ACCESS_LOG_FORMAT),
# as the Grafana site dashboard parses it (deploy/observability/dashboards/site.json).
NGINX_COMBINED = '<_> - <_> [<_>] "<_>" <status> <bytes> <_>'


@dataclass(frozen=True)
class Window:
    name: str
    start: datetime
    end: datetime
    step: int

    @classmethod
    def of(cls, name: str, now: datetime | None = None) -> "Window":
        seconds, step = RANGES[name]
        end = now or timezone.now()
        return cls(name=name, start=end - timedelta(seconds=seconds), end=end, step=step)

    @property
    def rate_window(self) -> str:
        # Wide enough for several scrapes (or log lines) at any step.
        return f"{max(60, 4 * self.step)}s"


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # PromQL/LogQL strings use Go's escapes


def _points(series: list[Series]) -> list[list[float]]:
    # NaN (a quantile or ratio over no requests) is "no value" at that step, not a number JSON has.
    return [[t, round(v, 6)] for t, v in series[0].values if math.isfinite(v)] if series else []


def _frame(window: Window, source: str, series: dict) -> dict:
    return {
        "range": window.name,
        "step_seconds": window.step,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "source": source,
        "series": series,
    }


def vps_promql(vps: Vps, window: Window) -> dict[str, tuple[str, str]]:
    """metric -> (unit, PromQL) for one VPS's node exporter."""
    sel = f'vps={_string(vps.name)}, kind="node"'
    w = window.rate_window
    root = f'{sel}, mountpoint="/"'
    return {
        "cpu": ("percent", f'100 * (1 - avg(rate(node_cpu_seconds_total{{{sel}, mode="idle"}}[{w}])))'),
        "memory": (
            "percent",
            f"100 * (1 - sum(node_memory_MemAvailable_bytes{{{sel}}})"
            f" / sum(node_memory_MemTotal_bytes{{{sel}}}))",
        ),
        "disk": (
            "percent",
            f"100 * (1 - max(node_filesystem_avail_bytes{{{root}}})"
            f" / max(node_filesystem_size_bytes{{{root}}}))",
        ),
        "load": ("load1", f"max(node_load1{{{sel}}})"),
        "network_receive": (
            "bytes/s",
            f'sum(rate(node_network_receive_bytes_total{{{sel}, device!="lo"}}[{w}]))',
        ),
        "network_transmit": (
            "bytes/s",
            f'sum(rate(node_network_transmit_bytes_total{{{sel}, device!="lo"}}[{w}]))',
        ),
    }


def vps_metrics(*, vps: Vps, range_name: str) -> dict:
    window = Window.of(range_name)
    series = {
        name: {
            "unit": unit,
            "values": _points(
                prometheus.query_range(promql, start=window.start, end=window.end, step_seconds=window.step)
            ),
        }
        for name, (unit, promql) in vps_promql(vps, window).items()
    }
    return _frame(window, "prometheus", series)


def site_org_id(site: Site) -> str:
    """The Loki tenant the site's VPS pushes into: the only one its logs are read from."""
    return loki.vps_org_id(site.vps_id)


def site_selector(site: Site, *, log: str = "") -> str:
    labels = {"job": "nginx", "vps": site.vps.name, "site": site.unix_user}
    if log:
        labels["log"] = log
    return loki.selector(labels)


def site_promql(site: Site, window: Window) -> dict[str, tuple[str, str]]:
    """metric -> (unit, PromQL) from the site's mtail counters on its own VPS."""
    sel = f'vps={_string(site.vps.name)}, kind="mtail", site={_string(site.unix_user)}'
    w = window.rate_window
    requests = f"sum(rate(chom_site_http_requests_total{{{sel}}}[{w}]))"
    errors = f'sum(rate(chom_site_http_requests_total{{{sel}, status="5xx"}}[{w}]))'
    buckets = f"sum by (le) (rate(chom_site_http_request_duration_seconds_bucket{{{sel}}}[{w}]))"
    return {
        "requests": ("req/s", requests),
        # Steps without requests have no ratio (rather than 0/0).
        "error_ratio": ("ratio", f"{errors} / ({requests} > 0)"),
        "latency_p50": ("seconds", f"histogram_quantile(0.5, {buckets})"),
        "latency_p95": ("seconds", f"histogram_quantile(0.95, {buckets})"),
        "bandwidth": ("bytes/s", f"sum(rate(chom_site_http_response_bytes_total{{{sel}}}[{w}]))"),
    }


def site_metrics(*, site: Site, range_name: str) -> dict:
    window = Window.of(range_name)
    series = {
        name: {
            "unit": unit,
            "values": _points(
                prometheus.query_range(promql, start=window.start, end=window.end, step_seconds=window.step)
            ),
        }
        for name, (unit, promql) in site_promql(site, window).items()
    }
    return _frame(window, "prometheus", series)


def site_logs_logql(site: Site, *, text: str = "", log: str = "") -> str:
    logql = site_selector(site, log=log)
    return f"{logql} |= {_string(text)}" if text else logql


def site_logs(*, site: Site, since: datetime, text: str = "", log: str = "", limit: int = 100) -> dict:
    end = timezone.now()
    lines = loki.query_logs(
        site_logs_logql(site, text=text, log=log), org_id=site_org_id(site), start=since, end=end, limit=limit
    )
    return {
        "since": since.isoformat(),
        "end": end.isoformat(),
        "lines": [
            {
                "timestamp": datetime.fromtimestamp(entry.timestamp_ns / 1e9, tz=UTC).isoformat(),
                "log": entry.labels.get("log", ""),
                "line": entry.line,
            }
            for entry in lines
        ],
    }
