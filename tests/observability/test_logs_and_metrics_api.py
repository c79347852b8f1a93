"""Site logs through Loki, VPS metrics through Prometheus: tenant scoping, validation, exact
queries, and clear 503s when a service is down. Site metrics from Prometheus (mtail's series):
tests/observability/test_site_metrics_prometheus.py."""

import time
from urllib.parse import unquote

import pytest

from tests.observability.factories import make_site, make_vps


@pytest.fixture
def fleet(alice, charlie):
    vps = make_vps("web1")
    return vps, make_site(alice.tenant, vps, "shop.acme.test"), make_site(charlie.tenant, vps, "globex.test")


def _now_ns() -> int:
    return time.time_ns()


def test_it_returns_a_tenants_site_logs_scoped_to_that_site(alice, fleet, loki):
    vps, mine, theirs = fleet
    now = _now_ns()
    org_id = f"vps-{vps.pk}"
    access = {"job": "nginx", "vps": "web1", "log": "access"}
    loki.push(access | {"site": mine.unix_user}, [(now - 10**9, "GET / 200")], org_id=org_id)
    loki.push(access | {"site": theirs.unix_user}, [(now, "GET /secret 200")], org_id=org_id)

    response = alice.client().get(f"/api/v1/sites/{mine.pk}/logs", {"since": "15m"})

    assert response.status_code == 200, response.json()
    assert [line["line"] for line in response.json()["lines"]] == ["GET / 200"]
    logql = loki.requests[-1].query["query"]
    assert logql == f'{{job="nginx", site="{mine.unix_user}", vps="web1"}}'
    assert theirs.unix_user not in logql


def test_it_reads_site_logs_only_from_the_tenant_of_the_sites_vps(alice, fleet, loki):
    vps, mine, _ = fleet
    other = make_vps("web2", ip_address="192.0.2.11")
    forged = {"job": "nginx", "vps": "web1", "site": mine.unix_user, "log": "access"}
    loki.push(forged, [(_now_ns(), "GET /forged-by-web2 200")], org_id=f"vps-{other.pk}")

    logs = alice.client().get(f"/api/v1/sites/{mine.pk}/logs")

    assert logs.status_code == 200 and logs.json()["lines"] == []
    assert len(loki.requests) == 1
    assert {r.headers["x-scope-orgid"] for r in loki.requests} == {f"vps-{vps.pk}"}


def test_it_never_puts_another_tenants_site_in_a_query_and_404s_on_it(alice, charlie, fleet, loki):
    _, mine, theirs = fleet
    assert alice.client().get(f"/api/v1/sites/{theirs.pk}/logs").status_code == 404
    assert alice.client().get(f"/api/v1/sites/{theirs.pk}/metrics").status_code == 404
    assert alice.client().get(f"/api/v1/sites/{mine.pk}/logs").status_code == 200
    assert charlie.client().get(f"/api/v1/sites/{theirs.pk}/logs").status_code == 200
    alice_queries = [r.query["query"] for r in loki.requests[:1]]
    assert all(theirs.unix_user not in q for q in alice_queries)
    assert theirs.unix_user in loki.requests[-1].query["query"]


def test_it_escapes_the_text_filter_so_it_cannot_change_the_selector(alice, fleet, loki):
    _, mine, _ = fleet
    evil = '"} or {site=~".+'
    response = alice.client().get(f"/api/v1/sites/{mine.pk}/logs", {"query": evil, "log": "error"})
    assert response.status_code == 200
    logql = loki.requests[-1].query["query"]
    assert logql == (
        f'{{job="nginx", log="error", site="{mine.unix_user}", vps="web1"}} |= "\\"}} or {{site=~\\".+"'
    )


def test_it_sends_the_time_range_and_limit_to_loki(alice, fleet, loki):
    _, mine, _ = fleet
    before = _now_ns()
    alice.client().get(f"/api/v1/sites/{mine.pk}/logs", {"since": "1h", "limit": "5"})
    params = loki.requests[-1].query
    assert params["limit"] == "5" and params["direction"] == "backward"
    assert abs(int(params["end"]) - before) < 5 * 10**9
    assert abs(int(params["end"]) - int(params["start"]) - 3600 * 10**9) < 10**9


@pytest.mark.parametrize(
    "params, field",
    [
        ({"since": "2d"}, "since"),
        ({"since": "2001-01-01T00:00:00Z"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5000"}, "limit"),
        ({"log": "php"}, "log"),
        ({"query": "x" * 201}, "query"),
    ],
)
def test_it_rejects_invalid_log_parameters(alice, fleet, loki, params, field):
    _, mine, _ = fleet
    response = alice.client().get(f"/api/v1/sites/{mine.pk}/logs", params)
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "invalid_input" and field in body["fields"]
    assert loki.requests == []


def test_it_rejects_a_range_outside_the_fixed_set(alice, staff, fleet):
    vps, mine, _ = fleet
    for client, url in (
        (alice, f"/api/v1/sites/{mine.pk}/metrics"),
        (staff, f"/api/v1/vps/{vps.pk}/metrics"),
    ):
        response = client.client().get(url, {"range": "2h"})
        assert response.status_code == 400
        assert "range" in response.json()["error"]["fields"]


def test_it_answers_503_when_loki_is_down_or_not_configured(alice, fleet, loki, settings):
    _, mine, _ = fleet
    loki.fail(502)
    response = alice.client().get(f"/api/v1/sites/{mine.pk}/logs")
    assert response.status_code == 503 and response.json()["error"]["code"] == "loki_unavailable"
    settings.LOKI_URL = ""
    response = alice.client().get(f"/api/v1/sites/{mine.pk}/logs")
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_configured"
    assert "LOKI_URL" in response.json()["error"]["message"]


def test_it_answers_503_when_prometheus_is_down(staff, fleet, settings):
    from devstack.processes import free_port

    vps, _, _ = fleet
    settings.PROMETHEUS_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    response = staff.client().get(f"/api/v1/vps/{vps.pk}/metrics")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "prometheus_unavailable"
    assert time.monotonic() - started < 5


def test_it_keeps_vps_metrics_for_staff(alice, fleet):
    vps, _, _ = fleet
    assert alice.client().get(f"/api/v1/vps/{vps.pk}/metrics").status_code == 403


def test_it_serves_the_dashboards_chart_data_to_staff_sessions_only(
    client, alice, fleet, loki, django_user_model
):
    _, mine, _ = fleet
    url = f"/observability/sites/{mine.pk}/logs.json"
    assert client.get(url).status_code == 302  # to the login page
    admin = django_user_model.objects.create_user("ops", "ops@chom.test", "pw", is_staff=True)
    client.force_login(admin)
    response = client.get(url, {"since": "15m", "query": "GET"})
    assert response.status_code == 200 and response.json()["lines"] == []
    assert unquote(loki.requests[-1].query["query"]).endswith('|= "GET"')
    assert client.get(url, {"since": "nope"}).status_code == 400
