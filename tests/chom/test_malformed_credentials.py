"""Every endpoint that reads a credential answers 401 (never a 500) for a malformed one."""

import pytest

MALFORMED = [
    "Bearer ünïcödé",
    "Bearer 令牌",
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "bearer chom_abc_def",
    "Bearer chom_" + "a" * 5000,
    "Bearer chom__",
    "Bearer chom_ü_ü",
    "Token x",
    "Bearer a b c",
]

ENDPOINTS = [
    ("get", "/api/v1/tenant"),
    ("post", "/api/v1/sites"),
    ("get", "/metrics"),
    ("get", "/observability/sd/targets"),
    ("post", "/webhooks/alertmanager"),
]


@pytest.mark.parametrize("header", MALFORMED)
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_it_answers_401_in_the_error_shape_for_a_malformed_credential(
    client, db, settings, method, path, header
):
    settings.METRICS_TOKEN = "scrape-secret"
    settings.METRICS_ALLOWED_IPS = []
    settings.PROMETHEUS_SD_TOKEN = "sd-secret"
    settings.ALERTMANAGER_WEBHOOK_TOKEN = "am-secret"
    response = getattr(client, method)(path, HTTP_AUTHORIZATION=header, content_type="application/json")
    assert response.status_code == 401, (path, header, response.content[:200])
    assert response.json()["error"]["code"] == "unauthenticated"
