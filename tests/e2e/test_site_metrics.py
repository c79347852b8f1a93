"""Per-site request metrics end to end, without Loki: a real VPS bootstrapped by CHOM runs mtail
over its sites' nginx access logs, a real Prometheus scrapes it through CHOM's service discovery,
and CHOM's API serves the site's requests/s, 5xx ratio and latency. mtail's account reads every
site's log; another site's user reads none."""

import concurrent.futures
import time

import pytest
import requests

from chom.models import Operation
from chom.operations import operation_execute
from fleet.remote.agent_client import Agent
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.models import Site
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e

BOOM = "<?php http_response_code(500); echo 'boom';"
SLOW = "<?php usleep(300000); echo 'slow';"
# A client-written field pretending the line ends with a 500 of 99999 bytes taking 9.9 s.
FORGED_AGENT = 'x" 500 99999 "-" "-" "-" "-" 9.900'


def _create(persona, **body) -> Site:
    response = persona.client().post("/api/v1/sites", body, format="json")
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())
    return Site.objects.get(pk=response.json()["id"])


def _promql(env, query: str) -> list[dict]:
    response = requests.get(f"{env['PROMETHEUS_URL']}/api/v1/query", params={"query": query}, timeout=5)
    return response.json()["data"]["result"]


def _total(env, vps, site) -> float | None:
    """The site's request count as Prometheus last scraped it from mtail; None before that."""
    sel = f'vps="{vps.name}", kind="mtail", site="{site.unix_user}"'
    result = _promql(env, f"sum(chom_site_http_requests_total{{{sel}}})")
    return float(result[0]["value"][1]) if result else None


def _sh(transport, *argv) -> str:
    result = transport.run(Command.of(*argv), timeout=30)
    return result.stdout + result.stderr


def test_it_serves_a_sites_request_rate_error_ratio_and_latency_from_mtail(monitoring, make_vps, alice):
    vps = make_vps("e2e-mtail")
    site = _create(alice, domain="metrics.php.test", type="php")
    neighbour = _create(alice, domain="neighbour.test", type="static")
    public = f"/var/www/{site.unix_user}/current/public"
    log = f"/var/log/chom/{site.unix_user}/access.log"
    with transport_for(vps) as transport:
        for name, content in (("boom.php", BOOM), ("slow.php", SLOW)):
            Agent(transport).call(
                "file-write",
                {"path": f"{public}/{name}", "content": content, "owner": site.unix_user,
                 "group": "www-data", "mode": "0640"},
            )  # fmt: skip
        # The log is mtail's to read and no other site's.
        assert "GET /" in _sh(transport, "runuser", "-u", "mtail", "--", "cat", log)
        assert "Permission denied" in _sh(transport, "runuser", "-u", neighbour.unix_user, "--", "cat", log)
        assert _sh(transport, "systemctl", "is-active", "mtail").strip() == "active"

    # The deploy's own checks made the site's first requests: its series exist (at zero for the
    # classes it has not seen) once Prometheus scraped mtail, so the traffic below is all counted.
    wait_for(
        lambda: _total(monitoring, vps, site) is not None, timeout=30, what="the site's series in Prometheus"
    )
    baseline = _total(monitoring, vps, site)
    time.sleep(1.2)  # one more scrape at the baseline

    def get(path: str, agent: str = "e2e") -> int:
        return requests.get(
            f"http://{vps.ip_address}{path}",
            headers={"Host": "metrics.php.test", "User-Agent": agent},
            timeout=10,
        ).status_code

    started = time.monotonic()
    paths = ["/"] * 69 + ["/missing.html"] * 10 + ["/boom.php"] * 10 + ["/slow.php"] * 10
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        codes = list(pool.map(get, paths))
    codes.append(get("/", FORGED_AGENT))
    assert sorted(set(codes)) == [200, 404, 500] and codes.count(500) == 10 and codes.count(404) == 10
    sent = time.monotonic()

    wait_for(
        lambda: (_total(monitoring, vps, site) or 0) >= baseline + 100,
        timeout=20,
        what="all 100 requests scraped",
    )
    scraped = time.time()

    def metrics():
        body = alice.client().get(f"/api/v1/sites/{site.pk}/metrics", {"range": "15m"}).json()
        series = body["series"]
        # The range query's end is a whole second: wait for a step that sees the last scrape.
        if not series["latency_p95"]["values"] or series["latency_p95"]["values"][-1][0] < scraped:
            return None
        return body, {name: s["values"][-1][1] for name, s in series.items() if s["values"]}

    body, latest = wait_for(metrics, timeout=20, interval=0.5, what="site metrics through CHOM's API")
    visible = time.monotonic()
    print(
        f"\ntraffic ({len(codes)} requests) sent in {sent - started:.2f}s; "
        f"traffic end -> metrics in CHOM's API: {visible - sent:.2f}s "
        f"(requests/s {latest['requests']:.2f}, 5xx ratio {latest['error_ratio']:.3f}, "
        f"p50 {latest['latency_p50']:.3f}s, p95 {latest['latency_p95']:.3f}s)"
    )
    assert body["source"] == "prometheus"
    assert latest["requests"] > 0.5
    # 10 errors among the 100 requests since the baseline scrape (a forged 5xx would make 0.11).
    assert 0.085 <= latest["error_ratio"] <= 0.103
    # 10 of ~100 requests slept 0.3 s: p95 lies in the (0.25, 0.5] bucket, p50 among the fast.
    assert 0.25 < latest["latency_p95"] <= 0.5
    assert latest["latency_p50"] < 0.1
