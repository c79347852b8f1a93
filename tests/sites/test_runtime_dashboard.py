"""The site page shows a site's runtime controls to staff: redirects, headers, basic-auth users
(paths and names, never a hash) and PHP settings, every value escaped."""

import pytest

from fleet.models import Vps
from sites.models import BasicAuthUser, Redirect, ResponseHeader, Site
from sites.runtime import password_hash


@pytest.fixture
def site(alice, db):
    vps = Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10,
        php_versions=["8.2"],
    )  # fmt: skip
    return Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="shop.example.com", type="php", php_version="8.2",
        status="active", unix_user="site1", current_release="r1", php_settings={"memory_limit": "512M"},
    )  # fmt: skip


def test_it_shows_the_runtime_controls_without_hashes_and_escaped(admin_client, site):
    Redirect.objects.create(
        site=site, source="/old", match="prefix", destination="https://new.example/x", status_code=308
    )
    ResponseHeader.objects.create(site=site, name="X-Test", value="<script>alert(1)</script>")
    hashed = password_hash("correct horse battery")
    BasicAuthUser.objects.create(
        site=site, path_prefix="/admin", username="alice-admin", password_hash=hashed
    )
    page = admin_client.get(f"/sites/{site.pk}/").content.decode()
    for shown in (
        "/old",
        "https://new.example/x",
        "308",
        "X-Test",
        "/admin",
        "alice-admin",
        "memory_limit",
        "512M",
    ):
        assert shown in page, shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert hashed not in page and "$2b$" not in page


def test_it_says_when_a_site_has_none(admin_client, site):
    Site.objects.filter(pk=site.pk).update(php_settings={})
    page = admin_client.get(f"/sites/{site.pk}/").content.decode()
    for shown in (
        "No redirects.",
        "No extra response headers.",
        "No basic auth.",
        "CHOM's defaults (memory_limit 256M).",
    ):
        assert shown in page, shown
