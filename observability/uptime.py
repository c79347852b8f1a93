"""A site's uptime from the blackbox exporter's probes (job `chom-probes`, targets from
observability.targets.probe_target_groups) through Prometheus: the state of each probed URL now,
and the share of successful probes over the last 30 days.

The selector is built from CHOM's own row (the site's unix user), never from user input."""

import json

from observability.clients import prometheus
from sites.models import Site

PROBE_JOB = "chom-probes"
UPTIME_WINDOW = "30d"
UP, DOWN, UNKNOWN = "up", "down", "unknown"


def probe_selector(site: Site) -> str:
    return f"probe_success{{job={json.dumps(PROBE_JOB)}, site={json.dumps(site.unix_user)}}}"


def _percent(ratio: float) -> float:
    return round(100 * ratio, 3)


def site_uptime(*, site: Site) -> dict:
    """{state, uptime_percent, window, urls: [{url, state, uptime_percent}]}. A site is up when
    every URL's last probe succeeded, down when one failed, unknown when none is probed (not
    serving, or Prometheus has not probed it yet); its uptime is its worst URL's."""
    selector = probe_selector(site)
    now = {s.labels.get("instance", ""): s.values[-1][1] for s in prometheus.query(selector)}
    ratios = {
        s.labels.get("instance", ""): s.values[-1][1]
        for s in prometheus.query(f"avg_over_time({selector}[{UPTIME_WINDOW}])")
    }
    urls = [
        {
            "url": url,
            "state": UNKNOWN if url not in now else (UP if now[url] == 1 else DOWN),
            "uptime_percent": _percent(ratios[url]) if url in ratios else None,
        }
        for url in sorted(set(now) | set(ratios))
    ]
    if not now:
        state = UNKNOWN
    else:
        state = UP if all(value == 1 for value in now.values()) else DOWN
    return {
        "state": state,
        "uptime_percent": min((_percent(r) for r in ratios.values()), default=None),
        "window": UPTIME_WINDOW,
        "urls": urls,
    }
