"""401/403/404 rules across every endpoint, with owner/teammate/viewer/outsider personas."""

import pytest

from chom.models import ApiToken
from chom.operations import operation_create


@pytest.fixture
def acme_operation(alice):
    return operation_create(kind="system.selfcheck", tenant=alice.tenant)


ENDPOINTS = [
    ("get", "/api/v1/tenant"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/1"),
    ("get", "/api/v1/operations"),
    ("get", "/api/v1/operations/00000000-0000-0000-0000-000000000000"),
]


@pytest.mark.parametrize("method,url", ENDPOINTS)
@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nope", "Token abc", "Bearer chom_000000000000_x", "Basic YWxpY2U6cHc="],
)
def test_it_answers_401_without_a_valid_token(anon, db, method, url, header):
    if header:
        anon.credentials(HTTP_AUTHORIZATION=header)
    response = getattr(anon, method)(url)
    assert response.status_code == 401
    body = response.json()
    assert body["error"]["code"] == "unauthenticated"
    assert set(body["error"]) == {"code", "message", "fields"}
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_shows_an_operation_to_its_tenant_and_hides_it_from_outsiders(
    alice, bob, victor, charlie, acme_operation
):
    url = f"/api/v1/operations/{acme_operation.id}"
    for persona in (alice, bob, victor):
        response = persona.client().get(url)
        assert response.status_code == 200
        assert response.json()["kind"] == "system.selfcheck"
    response = charlie.client().get(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert charlie.client().get("/api/v1/operations").json()["results"] == []


def test_it_lists_operations_with_the_documented_fields(alice, acme_operation):
    result = alice.client().get("/api/v1/operations").json()["results"][0]
    for field in (
        "id",
        "kind",
        "status",
        "step",
        "progress",
        "log",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    ):
        assert field in result
    assert result["status"] == "queued"
    assert result["log"][0]["message"] == "queued system.selfcheck"


def test_it_filters_operations_and_rejects_bad_filters(alice, acme_operation):
    assert len(alice.client().get("/api/v1/operations?status=queued").json()["results"]) == 1
    assert alice.client().get("/api/v1/operations?status=failed").json()["results"] == []
    response = alice.client().get("/api/v1/operations?status=bogus")
    assert response.status_code == 400
    assert "status" in response.json()["error"]["fields"]


def test_it_lets_staff_see_every_tenants_operations(staff, acme_operation):
    response = staff.client().get(f"/api/v1/operations/{acme_operation.id}")
    assert response.status_code == 200


def test_it_hides_another_tenants_token(alice, charlie):
    charlie_token = ApiToken.objects.get(user=charlie.user)
    response = alice.client().delete(f"/api/v1/tokens/{charlie_token.id}")
    assert response.status_code == 404
    assert ApiToken.objects.get(pk=charlie_token.pk).revoked_at is None


def test_it_forbids_a_viewer_to_create_tokens(victor):
    response = victor.client().post("/api/v1/tokens", {"name": "x"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert victor.client().get("/api/v1/tokens").status_code == 200


def test_it_forbids_writes_with_a_read_scoped_token(alice):
    read_token = (
        alice.client().post("/api/v1/tokens", {"name": "ro", "scope": "read"}, format="json").json()["token"]
    )
    client = alice.client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert client.get("/api/v1/tenant").status_code == 200
    assert client.post("/api/v1/tokens", {"name": "x"}, format="json").status_code == 403


def test_it_reports_tenant_tier_limits_and_usage(alice):
    body = alice.client().get("/api/v1/tenant").json()
    assert body["slug"] == "acme"
    assert body["tier"] == "pro"
    assert body["status"] == "active"
    assert body["limits"]["max_sites"] == 25
    assert body["limits"]["backup_retention_days"] == 30
    assert body["usage"]["api_tokens"] == 1


def test_it_has_no_tenant_for_a_staff_token(staff):
    assert staff.client().get("/api/v1/tenant").status_code == 403


def test_it_lets_staff_manage_their_own_platform_tokens(staff):
    created = staff.client().post("/api/v1/tokens", {"name": "automation"}, format="json")
    assert created.status_code == 201
    assert ApiToken.objects.get(prefix=created.json()["prefix"]).tenant is None


def test_it_rate_limits_per_token(alice, charlie, settings):
    from chom.tiers import TIERS

    limit = TIERS["starter"].api_rate_per_minute
    client = charlie.client()
    statuses = [client.get("/api/v1/tenant").status_code for _ in range(limit + 1)]
    assert statuses[:limit] == [200] * limit
    assert statuses[limit] == 429
    assert client.get("/api/v1/tenant").json()["error"]["code"] == "rate_limited"
    # Another token has its own budget.
    assert alice.client().get("/api/v1/tenant").status_code == 200
