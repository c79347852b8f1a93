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


def test_it_answers_loki_queries_only_with_matching_streams(fakes):
    loki = fakes[0]
    loki.push({"site": "site1"}, [(1_000, "GET / 200"), (2_000, "GET /x 404")])
    loki.push({"site": "site2"}, [(1_500, "GET / 200")])
    params = {"query": '{site="site1"} |= "404"', "start": "0", "end": "5000"}
    body = requests.get(f"{loki.url}/loki/api/v1/query_range", params=params, timeout=5).json()
    assert body["data"]["result"] == [{"stream": {"site": "site1"}, "values": [["2000", "GET /x 404"]]}]


def test_it_rejects_a_chat_message_without_text(fakes):
    chat = fakes[2]
    assert requests.post(chat.url, json={"blocks": []}, timeout=5).status_code == 400
    assert requests.post(chat.url, json={"text": "hi"}, timeout=5).status_code == 200
