import pytest

from devstack.processes import free_port


def test_it_answers_malformed_json_with_400_and_the_error_shape(alice):
    response = alice.client().post("/api/v1/tokens", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_it_says_what_to_send_when_the_body_is_not_json(alice):
    response = alice.client().post(
        "/api/v1/tokens", data="name=x", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in error["message"]


def test_it_names_invalid_fields(alice):
    response = alice.client().post(
        "/api/v1/tokens", {"name": "x" * 101, "scope": "root", "expires_in_days": -1}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert set(error["fields"]) == {"name", "scope", "expires_in_days"}


def test_it_treats_shell_metacharacters_as_plain_invalid_input(alice):
    response = alice.client().post("/api/v1/tokens", {"name": "", "scope": "$(reboot)"}, format="json")
    assert response.status_code == 400


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_it_answers_any_unknown_api_path_in_the_error_shape_even_with_debug(
    anon, alice, settings, debug, method
):
    settings.DEBUG = debug
    for client in (anon, alice.client()):
        response = getattr(client, method)("/api/v1/no/such/thing")
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_found"


def test_it_answers_a_wrong_method_with_405_in_the_error_shape(alice, settings):
    settings.DEBUG = True
    response = alice.client().put("/api/v1/tenant", {}, format="json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_it_answers_unknown_api_paths_with_json_404(alice):
    for url in ("/api/v1/nope", "/api/v1/operations/not-a-uuid", "/api/v1/tokens/abc"):
        response = alice.client().get(url)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "not_found"


def test_it_answers_wrong_methods_with_405(alice):
    response = alice.client().put("/api/v1/tenant", {}, format="json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_it_builds_the_openapi_schema(anon, db):
    response = anon.get("/api/v1/schema?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/operations/{id}" in schema["paths"]
    assert "/api/v1/tenant" in schema["paths"]


def test_it_serves_interactive_docs_without_a_cdn(anon, db):
    response = anon.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger" in html.lower()
    assert "cdn.jsdelivr" not in html


def test_it_generates_a_valid_schema_without_warnings(db, tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "bearerAuth" in out.read_text()


def test_it_answers_503_with_retry_after_when_its_cache_is_unreachable(alice, settings):
    port = free_port()  # nothing listens there: Redis restarting, as far as CHOM can tell
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
        }
    }
    response = alice.client().get("/api/v1/operations")
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response["Retry-After"] == "5"
