"""Site metrics through CHOM's API from a real Prometheus holding mtail's series (backfilled with
promtool, so every rate, ratio and quantile is known exactly): the site's own VPS and unix user
only, requests/s, 5xx ratio, p50/p95 latency, bandwidth, and gaps rather than NaN."""

import subprocess
import time
from pathlib import Path

import pytest

from devstack.processes import free_port, spawn, stop_processes, wait_http
from observability.queries import Window, site_promql
from tests.observability.factories import make_site, make_vps

pytestmark = pytest.mark.real

PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"
STEP = 15
LE = ("0.005", "0.05", "0.25", "+Inf")


def _series(labels: dict[str, str], start: int, end: int, per_step: dict) -> list[str]:
    """mtail's series for one site: PER_STEP = {"2xx": n, "5xx": n, "bytes": n, "buckets": [...]}."""
    base = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    lines = []
    for i, t in enumerate(range(start, end + 1, STEP)):
        for status in ("2xx", "5xx"):
            lines.append(
                f'chom_site_http_requests_total{{{base},status="{status}"}} {i * per_step[status]} {t}'
            )
        lines.append(f"chom_site_http_response_bytes_total{{{base}}} {i * per_step['bytes']} {t}")
        for le, count in zip(LE, per_step["buckets"], strict=True):
            lines.append(
                f'chom_site_http_request_duration_seconds_bucket{{{base},le="{le}"}} {i * count} {t}'
            )
    return lines


@pytest.fixture
def fleet(alice, charlie):
    vps = make_vps("web1")
    return vps, make_site(alice.tenant, vps, "shop.acme.test"), make_site(charlie.tenant, vps, "globex.test")


@pytest.fixture
def prometheus(tmp_path, settings, fleet):
    """A real Prometheus whose TSDB holds 12 minutes of mtail series ending a minute ago."""
    if not (Path(PROMETHEUS).exists() and Path(PROMTOOL).exists()):
        pytest.skip("apt-get install prometheus")
    vps, mine, theirs = fleet
    end = int(time.time()) - 60
    start = end - 12 * 60
    ours = {"vps": "web1", "kind": "mtail", "site": mine.unix_user}
    # Per 15 s: 27 ok + 3 errors (2 req/s, 10 % 5xx), 15 kB, half the requests within 5 ms.
    lines = _series(ours, start, end, {"2xx": 27, "5xx": 3, "bytes": 15000, "buckets": [15, 27, 30, 30]})
    noise = {"2xx": 1, "5xx": 1000, "bytes": 1, "buckets": [0, 0, 0, 1001]}
    lines += _series({**ours, "site": theirs.unix_user}, start, end, noise)  # a co-tenant on the VPS
    lines += _series({**ours, "vps": "web2"}, start, end, noise)  # the same user on another VPS
    lines += _series({**ours, "kind": "node"}, start, end, noise)  # not mtail
    types = [
        "# TYPE chom_site_http_requests counter",
        "# TYPE chom_site_http_response_bytes counter",
        "# TYPE chom_site_http_request_duration_seconds histogram",
    ]
    source = tmp_path / "mtail.om"
    # OpenMetrics wants each family's samples together.
    by_family: dict[str, list[str]] = {}
    for line in lines:
        by_family.setdefault(line.split("{")[0], []).append(line)
    body = [types[0], *by_family["chom_site_http_requests_total"]]
    body += [types[1], *by_family["chom_site_http_response_bytes_total"]]
    body += [types[2], *by_family["chom_site_http_request_duration_seconds_bucket"]]
    source.write_text("\n".join(body) + "\n# EOF\n")
    data = tmp_path / "data"
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (tmp_path / "prometheus.yml").write_text("global: {}\n")
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "prometheus.log"
    proc = spawn(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         f"--web.listen-address={url.removeprefix('http://')}"],
        log,
    )  # fmt: skip
    try:
        wait_http(f"{url}/-/ready", proc, log)
        settings.PROMETHEUS_URL = url
        yield start, end
    finally:
        stop_processes([proc])


def _inside(values: list[list[float]], start: int, end: int) -> list[float]:
    """Values at steps whose whole rate window lies inside the data."""
    return [v for t, v in values if start + 120 <= t <= end]


def test_it_serves_requests_errors_latency_and_bandwidth_of_the_site_from_prometheus(
    alice, fleet, prometheus
):
    start, end = prometheus
    _, mine, _ = fleet
    response = alice.client().get(f"/api/v1/sites/{mine.pk}/metrics", {"range": "15m"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["source"] == "prometheus" and body["step_seconds"] == 15
    series = body["series"]
    assert {name: s["unit"] for name, s in series.items()} == {
        "requests": "req/s",
        "error_ratio": "ratio",
        "latency_p50": "seconds",
        "latency_p95": "seconds",
        "bandwidth": "bytes/s",
    }
    expected = {
        "requests": 2.0,
        "error_ratio": 0.1,
        "latency_p50": 0.005,
        "latency_p95": 0.15,
        "bandwidth": 1000,
    }
    for name, value in expected.items():
        inside = _inside(series[name]["values"], start, end)
        assert len(inside) >= 30 and inside == pytest.approx([value] * len(inside)), name
    # After the data ends: no requests, so no ratio or quantile rather than NaN (JSON has none).
    assert all(t <= end + 60 for t, _ in series["error_ratio"]["values"])
    assert all(t <= end + 60 for t, _ in series["latency_p95"]["values"])


def test_it_builds_selectors_from_chom_rows_only():
    vps = type("V", (), {"name": 'we"b1'})()
    site = type("S", (), {"vps": vps, "unix_user": "site7"})()
    queries = dict(site_promql(site, Window.of("1h")))
    sel = 'vps="we\\"b1", kind="mtail", site="site7"'
    assert queries["requests"] == ("req/s", f"sum(rate(chom_site_http_requests_total{{{sel}}}[240s]))")
    assert all(sel in promql for _, promql in queries.values())


def test_it_answers_503_when_prometheus_is_not_configured(alice, fleet, settings):
    _, mine, _ = fleet
    settings.PROMETHEUS_URL = ""
    response = alice.client().get(f"/api/v1/sites/{mine.pk}/metrics")
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_configured"
