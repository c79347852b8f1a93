"""The fakes must be able to fail, or tests built on them prove nothing."""

import pytest
import requests

from tests.observability.fakes import FakeChatWebhook, FakeGrafana, FakeLoki


@pytest.fixture
def fakes():
    made = [FakeLoki(), FakeGrafana(), FakeChatWebhook()]
    yield made
    for fake in made:
        fake.close()


def test_it_makes_every_fake_fail_on_demand(fakes):
    for fake in fakes:
        fake.fail(502)
        assert requests.get(f"{fake.url}/anything", timeout=5).status_code == 502
        assert fake.requests[-1].path == "/anything"


def test_it_refuses_grafana_calls_without_the_token(fakes):
    grafana = fakes[1]
    assert requests.get(f"{grafana.url}/api/folders/x", timeout=5).status_code == 401
    headers = {"Authorization": f"Bearer {grafana.token}"}
    assert requests.get(f"{grafana.url}/api/folders/x", headers=headers, timeout=5).status_code == 404


SITE1 = {"job": "nginx", "site": "site1", "vps": "web1"}
SITE1_SELECTOR = '{job="nginx", site="site1", vps="web1"}'


def test_it_answers_loki_queries_only_with_matching_streams(fakes):
    loki = fakes[0]
    loki.push(SITE1, [(1_000, "GET / 200"), (2_000, "GET /x 404")], org_id="vps-1")
    loki.push(SITE1 | {"site": "site2"}, [(1_500, "GET / 200")], org_id="vps-1")
    params = {"query": f'{SITE1_SELECTOR} |= "404"', "start": "0", "end": "5000"}
    headers = {"X-Scope-OrgID": "vps-1"}
    body = requests.get(
        f"{loki.url}/loki/api/v1/query_range", params=params, headers=headers, timeout=5
    ).json()
    assert body["data"]["result"] == [{"stream": SITE1, "values": [["2000", "GET /x 404"]]}]


def test_it_refuses_a_loki_query_chom_does_not_write_as_loki_refuses_a_parse_error(fakes):
    loki = fakes[0]
    loki.push(SITE1, [(1_000, "GET / 200")], org_id="vps-1")
    params = {"query": '{site="site1"}', "start": "0", "end": "5000"}
    answer = requests.get(
        f"{loki.url}/loki/api/v1/query_range", params=params, headers={"X-Scope-OrgID": "vps-1"}, timeout=5
    )
    assert (answer.status_code, answer.headers["Content-Type"]) == (400, "text/plain; charset=utf-8")
    assert answer.text == "parse error at line 1, col 14: syntax error: unexpected CLOSE_BRACE"


def test_it_keeps_loki_tenants_apart_and_refuses_requests_without_one(fakes):
    loki = fakes[0]
    query = f"{loki.url}/loki/api/v1/query_range"
    params = {"query": SITE1_SELECTOR, "start": "0", "end": "5000"}
    push = {"streams": [{"stream": SITE1, "values": [["1000", "GET / 200"]]}]}
    assert requests.post(f"{loki.url}/loki/api/v1/push", json=push, timeout=5).status_code == 401
    assert requests.get(query, params=params, timeout=5).status_code == 401
    pushed = requests.post(
        f"{loki.url}/loki/api/v1/push", json=push, headers={"X-Scope-OrgID": "vps-1"}, timeout=5
    )
    assert pushed.status_code == 204
    for org_id, found in (("vps-1", 1), ("vps-2", 0)):
        answer = requests.get(query, params=params, headers={"X-Scope-OrgID": org_id}, timeout=5).json()
        assert len(answer["data"]["result"]) == found


def test_it_refuses_a_loki_push_that_is_not_a_push_request(fakes):
    loki = fakes[0]
    headers = {"X-Scope-OrgID": "vps-1", "Content-Type": "application/json"}
    assert (
        requests.post(f"{loki.url}/loki/api/v1/push", data=b"{}", headers=headers, timeout=5).status_code
        == 400
    )
    assert loki.streams == {}


def test_it_serves_grafana_datasources_without_showing_their_secrets(fakes):
    grafana = fakes[1]
    headers = {"Authorization": f"Bearer {grafana.token}"}
    source = {"uid": "ds1", "name": "Loki", "type": "loki", "secureJsonData": {"httpHeaderValue1": "vps-1"}}
    url = f"{grafana.url}/api/datasources"
    assert requests.post(url, json=source, headers=headers, timeout=5).status_code == 200
    assert requests.post(url, json={**source, "uid": "ds2"}, headers=headers, timeout=5).status_code == 409
    shown = requests.get(f"{url}/uid/ds1", headers=headers, timeout=5).json()
    assert shown["secureJsonFields"] == {"httpHeaderValue1": True} and "secureJsonData" not in shown
    assert requests.get(f"{url}/uid/ds2", headers=headers, timeout=5).status_code == 404


def test_it_rejects_a_chat_message_without_text(fakes):
    chat = fakes[2]
    assert requests.post(chat.url, json={"blocks": []}, timeout=5).status_code == 400
    assert requests.post(chat.url, json={"text": "hi"}, timeout=5).status_code == 200
