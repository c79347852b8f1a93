import pytest

from chom.models import Operation, Tenant
from fleet.models import Vps
from observability.models import Alert
from sites.models import Site


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1",
        provider="manual",
        ip_address="192.0.2.10",
        status="active",
        max_sites=10,
        php_versions=["8.2"],
    )


def _create(persona, **body):
    return persona.client().post("/api/v1/sites", body, format="json")


def test_it_accepts_a_static_site_with_202_location_and_operation(alice, vps):
    response = _create(alice, domain="Shop.Example.COM", type="static")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["domain"] == "shop.example.com"
    assert body["status"] == "pending"
    assert body["vps"] == {"id": vps.id, "ip_address": "192.0.2.10"}
    assert response["Location"] == f"/api/v1/sites/{body['id']}"
    op = Operation.objects.get(id=body["operation"]["id"])
    assert (op.kind, op.tenant, op.status) == ("site.deploy", alice.tenant, "queued")
    site = Site.objects.get(pk=body["id"])
    assert site.unix_user == f"site{site.pk}" and site.db_password == ""


def test_it_gives_php_sites_a_database_with_an_encrypted_password(alice, vps):
    body = _create(alice, domain="php.example.com", type="php").json()
    site = Site.objects.get(pk=body["id"])
    assert site.db_name == site.db_user == f"site{site.pk}"
    assert len(site.db_password) >= 24 and site.php_version == "8.2"
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT db_password FROM sites_site WHERE id = %s", [site.pk])
        assert site.db_password not in cursor.fetchone()[0]


@pytest.mark.parametrize(
    "domain",
    # "*.example.com" is a wildcard (tests/sites/test_wildcard_sites_api.py); a star elsewhere is not.
    ["example.com;rm -rf /", "../", "a.*.example.com", "10.0.0.1", "a" * 250 + ".com", "$(id).x.com", ""],
)
def test_it_rejects_invalid_domains_with_400_first(alice, vps, domain):
    Tenant.objects.filter(pk=alice.tenant.pk).update(tier="starter")
    response = _create(alice, domain=domain, type="laravel")  # also not in the tier: domain is checked first
    assert response.status_code == 400
    assert "domain" in response.json()["error"]["fields"]


def test_it_checks_type_then_count_then_domain_then_capacity(alice, charlie, vps):
    # charlie's starter tier has no laravel
    response = _create(
        charlie, domain="x.example.com", type="laravel", repository={"url": "https://git.example/r.git"}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (403, "tier_limit_reached")

    for i in range(3):
        assert _create(charlie, domain=f"c{i}.example.com", type="static").status_code == 202
    response = _create(charlie, domain="c0.example.com", type="static")  # over the count AND taken
    assert (response.status_code, response.json()["error"]["code"]) == (403, "tier_limit_reached")

    response = _create(alice, domain="c0.example.com", type="static")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "domain_taken")

    Vps.objects.update(status="unreachable")
    response = _create(alice, domain="new.example.com", type="static")
    assert (response.status_code, response.json()["error"]["code"]) == (503, "no_capacity")
    assert Alert.objects.get(name="fleet_no_capacity").status == "firing"


def test_it_counts_an_alias_as_a_taken_domain(alice, charlie, vps):
    assert (
        _create(alice, domain="a.example.com", type="static", aliases=["www.a.example.com"]).status_code
        == 202
    )
    response = _create(charlie, domain="www.a.example.com", type="static")
    assert response.status_code == 409
    error = response.json()["error"]
    message = "www.a.example.com is already hosted here."
    assert (error["message"], error["fields"]) == (message, {"domain": [message]})

    response = _create(charlie, domain="b.example.com", type="static", aliases=["a.example.com"])
    error = response.json()["error"]
    assert (response.status_code, error["fields"]) == (
        409,
        {"aliases": ["a.example.com is already hosted here."]},
    )


def test_it_validates_repositories_and_php_versions(alice, vps):
    for url in (
        "file:///etc",
        "ssh://-oProxyCommand=x/r",
        "-oProxyCommand=x",
        "https://host/repo;rm",
        "ext::sh",
    ):
        response = _create(alice, domain="l.example.com", type="laravel", repository={"url": url})
        assert response.status_code == 400, url
        assert "repository" in response.json()["error"]["fields"]
    response = _create(alice, domain="l.example.com", type="laravel")
    assert "repository" in response.json()["error"]["fields"]
    response = _create(
        alice,
        domain="l.example.com",
        type="laravel",
        repository={"url": "https://g.example/r.git", "branch": "--upload-pack=x"},
    )
    assert response.status_code == 400
    response = _create(alice, domain="p.example.com", type="php", php_version="7.4")
    assert (response.status_code, list(response.json()["error"]["fields"])) == (400, ["php_version"])


def test_it_shows_credentials_once_for_wordpress(alice, vps, settings):
    settings.WORDPRESS_ARCHIVE_URL, settings.WORDPRESS_ARCHIVE_SHA256 = (
        "https://files.example/wp.tgz",
        "a" * 64,
    )
    body = _create(alice, domain="wp.example.com", type="wordpress").json()
    assert body["credentials"]["admin_user"] == "admin" and len(body["credentials"]["admin_password"]) > 16
    assert "credentials" not in alice.client().get(f"/api/v1/sites/{body['id']}").json()


def test_it_walls_tenants_off(alice, bob, charlie, vps, staff):
    site_id = _create(alice, domain="a.example.com", type="static").json()["id"]
    assert bob.client().get(f"/api/v1/sites/{site_id}").status_code == 200
    for method, url in [
        ("get", f"/api/v1/sites/{site_id}"),
        ("patch", f"/api/v1/sites/{site_id}"),
        ("delete", f"/api/v1/sites/{site_id}"),
        ("post", f"/api/v1/sites/{site_id}/deploy"),
        ("post", f"/api/v1/sites/{site_id}/rollback"),
        ("post", f"/api/v1/sites/{site_id}/ssl"),
    ]:
        response = getattr(charlie.client(), method)(url, {}, format="json")
        assert response.status_code == 404, (method, url)
    assert charlie.client().get("/api/v1/sites").json()["results"] == []
    assert staff.client().get(f"/api/v1/sites/{site_id}").status_code == 200


def test_it_lets_only_staff_suspend(alice, vps, staff):
    site_id = _create(alice, domain="a.example.com", type="static").json()["id"]
    assert alice.client().post(f"/api/v1/sites/{site_id}/suspend").status_code == 403
    response = staff.client().post(f"/api/v1/sites/{site_id}/suspend")
    assert response.status_code == 202
    assert Site.objects.get(pk=site_id).suspended_reason == "admin"


def test_it_filters_and_paginates_the_list(alice, vps):
    _create(alice, domain="a.example.com", type="static")
    _create(alice, domain="b.example.com", type="php")
    client = alice.client()
    assert client.get("/api/v1/sites").json()["count"] == 2
    assert [s["domain"] for s in client.get("/api/v1/sites?type=php").json()["results"]] == ["b.example.com"]
    assert [s["domain"] for s in client.get("/api/v1/sites?search=a.ex").json()["results"]] == [
        "a.example.com"
    ]
    assert client.get("/api/v1/sites?status=bogus").status_code == 400


def test_it_refuses_a_rollback_without_a_previous_release(alice, vps):
    site_id = _create(alice, domain="a.example.com", type="static").json()["id"]
    response = alice.client().post(f"/api/v1/sites/{site_id}/rollback")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "no_previous_release")


def test_it_rolls_back_to_the_release_before_the_current_one(alice, vps):
    site = Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="a.example.com", type="static", status="active",
        current_release="r3",
    )  # fmt: skip
    for name, status in [("r1", "superseded"), ("r2", "superseded"), ("r3", "active")]:
        site.releases.create(name=name, status=status)
    response = alice.client().post(f"/api/v1/sites/{site.pk}/rollback")
    assert response.status_code == 202
    assert Operation.objects.get(id=response.json()["operation"]["id"]).params == {"release": "r2"}


def test_it_queues_a_redeploy_when_the_branch_changes(alice, vps):
    site_id = _create(alice, domain="a.example.com", type="static").json()["id"]
    response = alice.client().patch(
        f"/api/v1/sites/{site_id}",
        {"repository": {"url": "https://g.example/r.git", "branch": "next"}},
        format="json",
    )
    assert response.status_code == 202
    site = Site.objects.get(pk=site_id)
    assert (site.repository_url, site.repository_branch) == ("https://g.example/r.git", "next")


def test_it_marks_a_site_deleting_and_frees_capacity_when_deleted(alice, vps):
    site_id = _create(alice, domain="a.example.com", type="static").json()["id"]
    response = alice.client().delete(f"/api/v1/sites/{site_id}")
    assert response.status_code == 202
    assert Site.objects.get(pk=site_id).status == "deleting"
    from sites.services import site_hostnames_sync

    Site.objects.filter(pk=site_id).update(status="deleted")  # what site.delete's run ends with
    site_hostnames_sync(site=Site.objects.get(pk=site_id))
    assert alice.client().get(f"/api/v1/sites/{site_id}").status_code == 404
    assert _create(alice, domain="a.example.com", type="static").status_code == 202


def test_it_reports_site_usage_on_the_tenant(alice, vps):
    _create(alice, domain="a.example.com", type="static")
    assert alice.client().get("/api/v1/tenant").json()["usage"]["sites"] == 1


def test_it_suspends_and_unsuspends_a_tenants_sites_by_reason(alice, vps):
    from sites.services import tenant_sites_suspend, tenant_sites_unsuspend

    a = Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="a.example.com", type="static", status="active"
    )
    b = Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="b.example.com", type="static", status="active"
    )
    Site.objects.filter(pk=b.pk).update(suspended_reason="admin")
    ops = tenant_sites_suspend(tenant=alice.tenant, reason="billing")
    assert [op.kind for op in ops] == ["site.suspend"]
    assert Site.objects.get(pk=a.pk).suspended_reason == "billing"
    ops = tenant_sites_unsuspend(tenant=alice.tenant, reason="billing")
    assert [op.target_id for op in ops] == [str(a.pk)]
    assert Site.objects.get(pk=b.pk).suspended_reason == "admin"


@pytest.mark.parametrize(("suspended_reason", "expected"), [("billing", "suspended"), ("", "active")])
def test_it_keeps_a_suspended_site_suspended_when_a_deploy_queued_before_fails(
    alice, vps, suspended_reason, expected
):
    from chom.operations import OperationContext
    from sites.deploy import _deploy_failed

    site = Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="held.example.com", type="static", status="deploying",
        current_release="20261127T000000-abcdef", suspended_reason=suspended_reason,
    )  # fmt: skip
    op = Operation.objects.create(
        kind="site.deploy", tenant=alice.tenant, target_type="sites.site", target_id=str(site.pk),
        params={"release": "20261201T000000-ffffff"},
    )  # fmt: skip
    _deploy_failed(OperationContext(op), "php-lint failed")
    site.refresh_from_db()
    # Deploys of a suspended site are refused, so the row would otherwise let the next one in.
    assert (site.status, site.status_reason) == (expected, "php-lint failed")


def test_it_shows_sites_with_releases_and_operations_on_the_dashboard(admin_client, alice, vps):
    site_id = _create(alice, domain="a.example.com", type="static").json()["id"]
    site = Site.objects.get(pk=site_id)
    site.releases.create(name="20261127T000000-abcdef", commit="0123456789abcdef", status="active")
    listing = admin_client.get("/sites/?q=a.example")
    assert listing.status_code == 200 and b"a.example.com" in listing.content
    detail = admin_client.get(f"/sites/{site_id}/")
    assert detail.status_code == 200
    assert b"20261127T000000-abcdef" in detail.content and b"site.deploy" in detail.content


def test_it_queues_renewal_only_for_certificates_close_to_expiry(alice, vps):
    from datetime import timedelta

    from django.utils import timezone

    from sites.tls import sites_renew_certificates

    now = timezone.now()
    due = Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="due.example.com", type="static", status="active",
        ssl_status="active", ssl_expires_at=now + timedelta(days=10),
    )  # fmt: skip
    Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="fresh.example.com", type="static", status="active",
        ssl_status="active", ssl_expires_at=now + timedelta(days=60),
    )  # fmt: skip
    Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="gone.example.com", type="static", status="deleted",
        ssl_status="active", ssl_expires_at=now + timedelta(days=1),
    )  # fmt: skip
    ops = sites_renew_certificates(now=now)
    assert [(op.kind, op.target_id) for op in ops] == [("site.ssl", str(due.pk))]
