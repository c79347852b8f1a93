"""WordPress needs no settings: by default the agent installs it from the VPS's own signed
`wordpress` package; WORDPRESS_ARCHIVE_URL + WORDPRESS_ARCHIVE_SHA256 override that with a
verified archive, and half of that override stops the start."""

import importlib.util
from pathlib import Path

import pytest

from fleet.models import Vps
from sites.models import Site
from sites.types import site_type, wordpress_archive_check

AGENT = Path(__file__).resolve().parents[2] / "fleet" / "on_vps" / "vpsmanager.py"
SHA256 = "ab" * 32


def _agent():
    spec = importlib.util.spec_from_file_location("vpsmanager_for_sites", AGENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10,
        php_versions=["8.2"],
    )  # fmt: skip


def _create_wordpress(persona) -> tuple[dict, Site]:
    response = persona.client().post(
        "/api/v1/sites", {"domain": "blog.example.com", "type": "wordpress"}, format="json"
    )
    assert response.status_code == 202, response.content
    return response.json(), Site.objects.get(pk=response.json()["id"])


def test_it_offers_wordpress_with_no_settings_from_the_vps_distro_package(alice, vps, settings):
    settings.WORDPRESS_ARCHIVE_URL = settings.WORDPRESS_ARCHIVE_SHA256 = ""
    body, site = _create_wordpress(alice)
    assert body["credentials"]["admin_user"] == "admin"
    source = site_type("wordpress").source(site)
    assert source == {"type": "distro-package", "package": "wordpress"}
    assert _agent().parse_source(source) == source  # the agent accepts what CHOM sends


def test_it_installs_wordpress_from_the_configured_archive_instead(alice, vps, settings):
    settings.WORDPRESS_ARCHIVE_URL = "https://mirror.example/wordpress-6.1.9.tar.gz"
    settings.WORDPRESS_ARCHIVE_SHA256 = SHA256
    _, site = _create_wordpress(alice)
    source = site_type("wordpress").source(site)
    assert source == {
        "type": "archive",
        "url": "https://mirror.example/wordpress-6.1.9.tar.gz",
        "sha256": SHA256,
        "strip_components": 1,
    }
    assert _agent().parse_source(source) == source


@pytest.mark.parametrize(
    ("url", "sha256", "error"),
    [
        ("", "", None),
        ("https://mirror.example/wp.tar.gz", SHA256, None),
        ("https://mirror.example/wp.tar.gz", "", "sites.E001"),
        ("", SHA256, "sites.E001"),
        ("https://mirror.example/wp.tar.gz", SHA256.upper(), "sites.E001"),
        ("ftp://mirror.example/wp.tar.gz", SHA256, "sites.E002"),
    ],
)
def test_it_refuses_to_start_with_half_an_archive_override(settings, url, sha256, error):
    settings.WORDPRESS_ARCHIVE_URL, settings.WORDPRESS_ARCHIVE_SHA256 = url, sha256
    assert [e.id for e in wordpress_archive_check()] == ([error] if error else [])
