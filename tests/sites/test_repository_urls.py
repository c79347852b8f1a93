"""Repository URLs are requests a tenant makes from inside our network: internal addresses,
the cloud metadata service and CHOM's own services are refused; credentials never go in URLs."""

import pytest

from fleet.models import Vps

REFUSED = [
    ("https://127.0.0.1/repo.git", "internal address"),
    ("git://127.0.0.1:9418/repo.git", "internal address"),
    ("https://localhost/repo.git", "internal address"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("https://10.0.0.5/repo.git", "internal address"),
    ("https://192.168.1.10/repo.git", "internal address"),
    ("https://172.16.3.4/repo.git", "internal address"),
    ("https://0.0.0.0/repo.git", "internal address"),
    ("https://2130706433/repo.git", "internal address"),  # 127.0.0.1 as one number
    ("https://[::1]/repo.git", "internal address"),
    ("https://[::ffff:127.0.0.1]/repo.git", "internal address"),
    ("https://[fe80::1]/repo.git", "link-local"),
    ("https://alice:s3cret@git.example.com/repo.git", "password or token"),
    ("https://ghp_abc123:x-oauth-basic@github.com/o/r.git", "password or token"),
    ("https://git.example.com:99999/repo.git", "port"),
]


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web", provider="manual", ip_address="192.0.2.1", status="active", php_versions=["8.2"]
    )


def _create(persona, url):
    body = {"domain": "app.example.com", "type": "laravel", "repository": {"url": url}}
    return persona.client().post("/api/v1/sites", body, format="json")


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_it_refuses_repository_urls_that_reach_inside(alice, vps, url, why):
    response = _create(alice, url)
    assert response.status_code == 400, response.content
    assert why in " ".join(response.json()["error"]["fields"]["repository"]["url"])


def test_an_allowed_network_opens_internal_git_but_never_link_local_or_chom_itself(alice, vps, settings):
    settings.REPOSITORY_ALLOWED_NETWORKS = ["10.251.0.0/16", "169.254.0.0/16", "127.0.0.0/8"]
    settings.REDIS_URL = settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    assert _create(alice, "git://10.251.1.1:9418/app.git").status_code == 202
    assert _create(alice, "http://169.254.169.254/latest").status_code == 400
    refused = _create(alice, "http://127.0.0.1:6379/app.git")
    assert "CHOM's own services" in str(refused.json()), refused.content


def test_a_user_name_alone_is_fine_and_an_unresolvable_host_is_left_to_git(alice, vps):
    assert _create(alice, "https://git@git.invalid/o/r.git").status_code == 202
