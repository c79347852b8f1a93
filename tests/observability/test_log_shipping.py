"""Promtail pushes to CHOM, never to Loki: each VPS with its own token, each push forwarded
unchanged into that VPS's own Loki tenant, so a VPS cannot write lines read as another VPS's sites."""

import gzip
import json
import time

import pytest
from django.db import connection

from devstack.processes import free_port
from observability.log_shipping import log_credential_ensure
from observability.models import LogShippingCredential
from tests.observability.factories import make_site, make_vps

PUSH = "/observability/loki/api/v1/push"
PROTOBUF = b"\xff\x06\x00\x00sNaPpY\x01\x00\x00\x00binary \x00 push"  # opaque bytes, as Promtail sends


@pytest.fixture
def fleet(db):
    return make_vps("web1"), make_vps("web2", ip_address="192.0.2.11")


def _push(
    client, token: str | None, body: bytes = PROTOBUF, content_type="application/x-protobuf", **headers
):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.post(PUSH, data=body, content_type=content_type, **headers)


def _json_push(labels: dict[str, str], line: str) -> bytes:
    return json.dumps({"streams": [{"stream": labels, "values": [[str(time.time_ns()), line]]}]}).encode()


def test_it_forwards_a_push_byte_for_byte_into_the_tenant_of_the_vps_whose_token_it_carries(
    client, fleet, loki
):
    web1, web2 = fleet
    token = log_credential_ensure(vps=web2)

    # The tenant header a VPS sends is its own invention: CHOM sets the tenant from the token.
    response = _push(client, token, HTTP_X_SCOPE_ORGID=f"vps-{web1.pk}")

    assert response.status_code == 204, response.content
    [forwarded] = loki.requests
    assert (forwarded.method, forwarded.path) == ("POST", "/loki/api/v1/push")
    assert forwarded.raw == PROTOBUF
    assert forwarded.headers["x-scope-orgid"] == f"vps-{web2.pk}" != f"vps-{web1.pk}"
    assert forwarded.headers["content-type"] == "application/x-protobuf"
    assert "authorization" not in forwarded.headers


def test_it_keeps_the_content_encoding_of_a_gzipped_json_push(client, fleet, loki):
    web1, _ = fleet
    body = gzip.compress(_json_push({"job": "nginx", "vps": "web1", "site": "site1"}, "GET / 200"))

    response = _push(
        client, log_credential_ensure(vps=web1), body, "application/json", HTTP_CONTENT_ENCODING="gzip"
    )

    assert response.status_code == 204
    assert loki.requests[-1].raw == body and loki.requests[-1].headers["content-encoding"] == "gzip"
    assert [s["stream"]["site"] for s in loki.streams[f"vps-{web1.pk}"]] == ["site1"]


def test_it_never_shows_lines_a_vps_forged_for_a_site_on_another_vps(client, alice, fleet, loki):
    web1, web2 = fleet
    site = make_site(alice.tenant, web1, "shop.acme.test")
    labels = {"job": "nginx", "vps": "web1", "site": site.unix_user, "log": "access"}
    real = _push(
        client, log_credential_ensure(vps=web1), _json_push(labels, "GET /real 200"), "application/json"
    )
    forged = _push(
        client, log_credential_ensure(vps=web2), _json_push(labels, "GET /forged 200"), "application/json"
    )
    assert real.status_code == forged.status_code == 204  # the forgery lands in web2's own tenant

    response = alice.client().get(f"/api/v1/sites/{site.pk}/logs")

    assert response.status_code == 200
    assert [line["line"] for line in response.json()["lines"]] == ["GET /real 200"]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer nope",
        "Basic d2ViMTpzZWNyZXQ=",
        "Bearer {id}.{wrong}",
        "Bearer {other}.{secret}",  # another VPS's id with this VPS's secret
        "Bearer {id}.{secret}\n",
        "Bearer {id}.{secret} ",
        "bearer {id}.{secret}",
        "Bearer {id}.{secret}x",
        "Bearer {arabic_id}.{secret}",  # digits int() understands, but not ASCII
        "Bearer 99999999999999999999999.{secret}",
    ],
)
def test_it_refuses_a_push_without_the_vps_own_token_and_forwards_nothing(client, fleet, loki, authorization):
    web1, web2 = fleet
    secret = log_credential_ensure(vps=web1).split(".", 1)[1]
    log_credential_ensure(vps=web2)
    headers = {}
    if authorization is not None:
        arabic_id = "".join(chr(0x0660 + int(d)) for d in str(web1.pk))
        value = authorization.format(
            id=web1.pk, other=web2.pk, secret=secret, wrong="A" * len(secret), arabic_id=arabic_id
        )
        headers["HTTP_AUTHORIZATION"] = value.encode().decode("latin-1")  # WSGI's view of the bytes

    response = client.post(PUSH, data=PROTOBUF, content_type="application/x-protobuf", **headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response["WWW-Authenticate"] == 'Bearer realm="chom"'
    assert loki.requests == []


def test_it_stops_accepting_a_deleted_vps_token(client, fleet, loki):
    web1, _ = fleet
    token = log_credential_ensure(vps=web1)
    web1.delete()
    assert not LogShippingCredential.objects.exists()
    assert _push(client, token).status_code == 401
    assert loki.requests == []


def test_it_refuses_a_push_over_the_size_cap_with_413(client, fleet, loki, settings):
    web1, _ = fleet
    token = log_credential_ensure(vps=web1)
    settings.LOKI_PUSH_MAX_BYTES = 1024

    too_big = _push(client, token, b"x" * 1025)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "too_large"
    assert loki.requests == []
    assert _push(client, token, b"x" * 1024).status_code == 204
    assert len(loki.requests[-1].raw) == 1024


def test_it_takes_pushes_larger_than_djangos_form_upload_cap(client, fleet, loki, settings):
    web1, _ = fleet
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert _push(client, log_credential_ensure(vps=web1), b"y" * 5000).status_code == 204
    assert loki.requests[-1].raw == b"y" * 5000


@pytest.mark.parametrize(
    "loki_status, answer, code",
    [(500, 503, "loki_unavailable"), (502, 503, "loki_unavailable"), (429, 429, "rate_limited")],
)
def test_it_answers_json_promtail_retries_when_loki_fails(client, fleet, loki, loki_status, answer, code):
    web1, _ = fleet
    loki.fail(loki_status)
    response = _push(client, log_credential_ensure(vps=web1))
    assert response.status_code == answer
    assert response.json()["error"]["code"] == code


def test_it_passes_on_lokis_400_for_a_batch_it_will_never_take(client, fleet, loki):
    web1, _ = fleet
    response = _push(client, log_credential_ensure(vps=web1), b'{"not": "streams"}', "application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and "not a push request" in error["message"]


def test_it_answers_503_when_loki_is_unreachable_or_not_configured(client, fleet, settings):
    web1, _ = fleet
    token = log_credential_ensure(vps=web1)
    settings.LOKI_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    down = _push(client, token)
    assert down.status_code == 503 and down.json()["error"]["code"] == "loki_unavailable"
    assert time.monotonic() - started < 5
    settings.LOKI_URL = ""
    unset = _push(client, token)
    assert unset.status_code == 503 and unset.json()["error"]["code"] == "not_configured"


def test_it_takes_only_posts(client, fleet, loki):
    web1, _ = fleet
    token = log_credential_ensure(vps=web1)
    assert client.get(PUSH, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405
    assert loki.requests == []


def test_it_keeps_the_secret_encrypted_at_rest(fleet):
    web1, _ = fleet
    token = log_credential_ensure(vps=web1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM observability_logshippingcredential")
        [(stored,)] = cursor.fetchall()
    assert token.split(".", 1)[1] not in stored
    assert log_credential_ensure(vps=web1) == token
