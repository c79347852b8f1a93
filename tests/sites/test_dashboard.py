"""The sites pages' actions: staff forms that call the API's services and go on to the operation."""

import pytest
from django.test import Client
from django.utils import timezone

from chom.models import AuditEvent, Operation
from fleet.models import Vps
from sites.git_ssh import deploy_key_generate, key_fingerprint
from sites.models import Release, Site, SiteHostname, SiteVariable, SiteWebhook


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10,
        php_versions=["8.2"],
    )  # fmt: skip


@pytest.fixture
def site(alice, vps):
    """Alice's live site: r3 serves, r1 and r2 served before, r0 was pruned, rX failed."""
    site = Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="shop.example.com", type="static", status="active",
        unix_user="site1", current_release="r3",
    )  # fmt: skip
    SiteHostname.objects.create(site=site, hostname=site.domain)
    for name, status in [("r0", "pruned"), ("r1", "superseded"), ("r2", "superseded"), ("rX", "failed")]:
        Release.objects.create(site=site, name=name, status=status)
    Release.objects.create(site=site, name="r3", status="active")
    return site


def _operation(response, kind: str) -> Operation:
    op = Operation.objects.get(kind=kind)
    assert response.status_code == 302 and response["Location"] == f"/operations/{op.id}/"
    return op


def _shown(client, page: str) -> list[str]:
    return [str(m) for m in client.get(page).context["messages"]]


# --- create ----------------------------------------------------------------------------------------


def test_it_creates_a_site_for_the_tenant_staff_chose(admin_client, admin_user, alice, vps):
    response = admin_client.post(
        "/sites/new",
        {"tenant": alice.tenant.pk, "domain": "Shop.Example.COM", "type": "php",
         "aliases": "www.shop.example.com"},
    )  # fmt: skip
    op = _operation(response, "site.deploy")
    site = Site.objects.get()
    assert (site.tenant, site.domain, site.aliases, site.php_version) == (
        alice.tenant, "shop.example.com", ["www.shop.example.com"], "8.2"
    )  # fmt: skip
    assert (op.tenant, op.created_by, op.target_id, op.requested_by_tenant) == (
        alice.tenant, admin_user, str(site.pk), False
    )  # fmt: skip
    assert AuditEvent.objects.get(action="site.created").actor == admin_user


def test_it_creates_a_site_from_a_repository_branch(admin_client, alice, vps):
    admin_client.post(
        "/sites/new",
        {"tenant": alice.tenant.pk, "domain": "app.example.com", "type": "laravel",
         "repository_url": "https://git.example.com/app.git", "repository_branch": "release"},
    )  # fmt: skip
    site = Site.objects.get()
    assert (site.repository_url, site.repository_branch) == ("https://git.example.com/app.git", "release")


def test_it_does_not_count_a_staff_create_against_the_tenants_operation_cap(admin_client, alice, vps):
    for _ in range(alice.tenant.limits.max_pending_operations):
        Operation.objects.create(kind="site.deploy", tenant=alice.tenant, requested_by_tenant=True)
    response = admin_client.post(
        "/sites/new", {"tenant": alice.tenant.pk, "domain": "capped.example.com", "type": "static"}
    )
    assert response.status_code == 302 and Site.objects.filter(domain="capped.example.com").exists()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"domain": "example.com;rm -rf /", "type": "static"}, "domain", ""),
        ({"domain": "app.example.com", "type": "laravel"}, "repository_url", "deploys from a repository"),
        ({"domain": "app.example.com", "type": "static", "repository_url": "file:///etc"},
         "repository_url", ""),
        ({"domain": "app.example.com", "type": "static", "repository_url": "https://git.example.com/a.git",
          "repository_branch": "--upload-pack=x"}, "repository_branch", "Not a valid branch name."),
        ({"domain": "app.example.com", "type": "static", "aliases": "app.example.com"},
         "aliases", "distinct"),
        ({"domain": "app.example.com", "type": "cobol"}, "type", ""),
    ],
)  # fmt: skip
def test_it_shows_the_apis_validation_errors_on_the_create_form(
    admin_client, alice, vps, fields, field, message
):
    response = admin_client.post("/sites/new", {"tenant": alice.tenant.pk, **fields})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and message in " ".join(errors[field]), errors
    assert 'aria-invalid="true"' in response.content.decode()
    assert not Site.objects.exists() and not Operation.objects.exists()


def test_it_goes_back_to_the_form_with_the_services_refusal(admin_client, alice, site):
    page = "http://testserver/sites/new"
    response = admin_client.post(
        "/sites/new", {"tenant": alice.tenant.pk, "domain": site.domain, "type": "static"}, HTTP_REFERER=page
    )
    assert response.status_code == 302 and response["Location"] == page
    assert Site.objects.count() == 1 and not Operation.objects.exists()
    assert _shown(admin_client, page) == ["shop.example.com is already hosted here."]


def test_it_shows_wordpress_credentials_once_on_the_page_after_create(admin_client, alice, vps, settings):
    settings.WORDPRESS_ARCHIVE_URL = "https://wordpress.example/latest.tar.gz"
    settings.WORDPRESS_ARCHIVE_SHA256 = "0" * 64
    response = admin_client.post("/sites/new", {"tenant": alice.tenant.pk, "domain": "wp.example.com",
                                                "type": "wordpress"})  # fmt: skip
    password = response.context["credentials"]["admin_password"]
    assert response.status_code == 200 and password in response.content.decode()
    op = Operation.objects.get(kind="site.deploy")
    assert f"/operations/{op.id}/" in response.content.decode()
    assert (
        password not in str(response.cookies)
        and password not in admin_client.get(f"/sites/{op.target_id}/").content.decode()
    )


def test_it_offers_every_tenant_on_the_create_page(admin_client, alice, charlie):
    page = admin_client.get("/sites/new").content.decode()
    assert ">acme</option>" in page and ">globex</option>" in page


# --- actions on a site -----------------------------------------------------------------------------


def test_it_queues_a_deploy(admin_client, admin_user, site):
    op = _operation(admin_client.post(f"/sites/{site.pk}/deploy"), "site.deploy")
    assert (op.target_id, op.created_by, op.requested_by_tenant) == (str(site.pk), admin_user, False)


def test_it_rolls_back_to_the_release_staff_chose(admin_client, site):
    op = _operation(admin_client.post(f"/sites/{site.pk}/rollback", {"release": "r1"}), "site.rollback")
    assert op.params == {"release": "r1"}


@pytest.mark.parametrize(
    ("release", "message"),
    [
        (
            "r0",
            "Release r0 is pruned: only a superseded release, still on the server, can be rolled back to.",
        ),
        (
            "rX",
            "Release rX is failed: only a superseded release, still on the server, can be rolled back to.",
        ),
        (
            "r3",
            "Release r3 is active: only a superseded release, still on the server, can be rolled back to.",
        ),
        ("r9", "shop.example.com has no release r9."),
    ],
)
def test_it_refuses_a_rollback_to_a_release_that_cannot_serve(admin_client, site, release, message):
    page = f"http://testserver/sites/{site.pk}/"
    response = admin_client.post(f"/sites/{site.pk}/rollback", {"release": release}, HTTP_REFERER=page)
    assert response.status_code == 302 and response["Location"] == page
    assert not Operation.objects.exists()
    assert _shown(admin_client, page) == [message]


def test_it_offers_a_rollback_button_for_each_superseded_release(admin_client, site):
    page = admin_client.get(f"/sites/{site.pk}/").content.decode()
    offered = [name for name in ("r0", "r1", "r2", "r3", "rX") if f'name="release" value="{name}"' in page]
    assert offered == ["r1", "r2"]


def test_it_requests_a_certificate(admin_client, site):
    op = _operation(admin_client.post(f"/sites/{site.pk}/ssl"), "site.ssl")
    assert op.target_id == str(site.pk)


def test_it_suspends_with_the_reason_staff_gave(admin_client, admin_user, site):
    op = _operation(
        admin_client.post(f"/sites/{site.pk}/suspend", {"reason": "phishing report"}), "site.suspend"
    )
    site.refresh_from_db()
    assert site.suspended_reason == "admin: phishing report" and op.requested_by_tenant is False
    event = AuditEvent.objects.get(action="site.suspended")
    assert (event.actor, event.data) == (admin_user, {"reason": "admin: phishing report"})
    assert "Unsuspend" in admin_client.get(f"/sites/{site.pk}/").content.decode()


def test_it_refuses_a_suspension_without_a_reason(admin_client, site):
    page = f"http://testserver/sites/{site.pk}/"
    response = admin_client.post(f"/sites/{site.pk}/suspend", {"reason": "  "}, HTTP_REFERER=page)
    assert response.status_code == 302 and not Operation.objects.exists()
    site.refresh_from_db()
    assert site.suspended_reason == ""
    assert _shown(admin_client, page) == ["This field is required."]


def test_it_never_suspends_with_a_reason_billing_would_lift(admin_client, site):
    """Billing unsuspends only sites whose reason is its own key; a staff reason never equals it."""
    from sites.services import tenant_sites_unsuspend

    admin_client.post(f"/sites/{site.pk}/suspend", {"reason": "billing_unpaid"})
    assert tenant_sites_unsuspend(tenant=site.tenant, reason="billing_unpaid") == []


def test_it_unsuspends(admin_client, admin_user, site):
    Site.objects.filter(pk=site.pk).update(status="suspended", suspended_reason="admin: abuse")
    op = _operation(
        admin_client.post(f"/sites/{site.pk}/unsuspend", {"reason": "cleaned up"}), "site.unsuspend"
    )
    site.refresh_from_db()
    assert site.suspended_reason == "" and op.created_by == admin_user
    assert AuditEvent.objects.get(action="site.unsuspended").data == {"reason": "admin: cleaned up"}


# --- delete with a typed confirmation --------------------------------------------------------------


@pytest.mark.parametrize("typed", ["", "shop.example", "SHOP.EXAMPLE.COM", "other.example.com"])
def test_it_deletes_nothing_when_the_typed_domain_is_wrong(admin_client, site, typed):
    response = admin_client.post(f"/sites/{site.pk}/delete", {"confirm": typed})
    assert response.status_code == 200
    assert response.context["form"].errors["confirm"]
    if typed:
        assert "nothing was deleted" in response.content.decode()
    site.refresh_from_db()
    assert site.status == "active" and not Operation.objects.exists()
    assert not AuditEvent.objects.filter(action="site.delete_requested").exists()


def test_it_deletes_a_site_when_its_domain_is_typed(admin_client, admin_user, site):
    assert admin_client.get(f"/sites/{site.pk}/delete").status_code == 200
    op = _operation(
        admin_client.post(f"/sites/{site.pk}/delete", {"confirm": " shop.example.com "}), "site.delete"
    )
    site.refresh_from_db()
    assert site.status == "deleting" and op.requested_by_tenant is False
    assert AuditEvent.objects.get(action="site.delete_requested").actor == admin_user
    assert "being deleted" in admin_client.get(f"/sites/{site.pk}/").content.decode()


# --- who may ---------------------------------------------------------------------------------------

ACTIONS = [
    ("new", {"domain": "x.example.com", "type": "static"}),
    ("{pk}/deploy", {}),
    ("{pk}/rollback", {"release": "r1"}),
    ("{pk}/ssl", {}),
    ("{pk}/suspend", {"reason": "x"}),
    ("{pk}/unsuspend", {}),
    ("{pk}/delete", {"confirm": "shop.example.com"}),
]


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_it_sends_a_non_staff_user_to_log_in_and_changes_nothing(client, alice, site, path, body):
    client.force_login(alice.user)
    response = client.post(f"/sites/{path.format(pk=site.pk)}", {"tenant": alice.tenant.pk, **body})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    site.refresh_from_db()
    assert (site.status, site.suspended_reason, Site.objects.count()) == ("active", "", 1)
    assert not Operation.objects.exists()


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_it_refuses_a_post_without_the_csrf_token(admin_user, alice, site, path, body):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(f"/sites/{path.format(pk=site.pk)}", {"tenant": alice.tenant.pk, **body})
    assert response.status_code == 403
    assert not Operation.objects.exists() and Site.objects.get().status == "active"


def test_it_accepts_a_post_from_its_own_form_with_the_csrf_token(admin_user, site):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    token = client.get(f"/sites/{site.pk}/").context["csrf_token"]
    response = client.post(f"/sites/{site.pk}/deploy", {"csrfmiddlewaretoken": str(token)})
    _operation(response, "site.deploy")


# --- app delivery (read only) ----------------------------------------------------------------------


def test_it_shows_staff_the_sites_app_delivery_and_none_of_its_secrets(admin_client, site):
    """Deploy key, pinned host key, variable names, hooks, the webhook's existence and each
    release's source: shown. Variable values, the private key and the webhook secret: never; a
    tenant's hook argv is escaped, markup and invisible characters included."""
    private, public = deploy_key_generate(comment="chom-shop")
    Site.objects.filter(pk=site.pk).update(
        deploy_key_private=private, deploy_key_public=public, deploy_key_created_at=timezone.now(),
        git_host_key="git.example.com ssh-ed25519 AAAA", git_host_key_fingerprint="SHA256:hostkeyfingerprint",
        build_command=["npm", "run", "build"],
        release_command=["php", "artisan", "<script>x</script>", "\u202eevil"],
    )  # fmt: skip
    SiteVariable.objects.create(site=site, name="STRIPE_SECRET", value="sk_live_value_never_shown")
    SiteWebhook.objects.create(site=site, hook_id="hook-abc", secret="webhook-secret-never-shown")
    Release.objects.filter(site=site, name="r3").update(source="upload", commit="sha256:" + "ab" * 32)
    Release.objects.filter(site=site, name="r2").update(
        source="git", commit="0123456789abcdef" * 2 + "01234567"
    )

    page = admin_client.get(f"/sites/{site.pk}/").content.decode()
    assert key_fingerprint(public) in page and public in page
    assert "SHA256:hostkeyfingerprint" in page
    assert "STRIPE_SECRET" in page
    assert "[&quot;npm&quot;, &quot;run&quot;, &quot;build&quot;]" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "\\u202eevil" in page
    assert "<script>x" not in page and "\u202e" not in page
    assert "Push webhook</th><td>yes" in page
    assert "upload" in page and "sha256:abababababababab" in page and "0123456789ab" in page
    for secret in ("sk_live_value_never_shown", "webhook-secret-never-shown", "hook-abc", "PRIVATE KEY"):
        assert secret not in page, secret


def test_it_says_when_a_site_has_no_app_delivery_set_up(admin_client, site):
    page = admin_client.get(f"/sites/{site.pk}/").content.decode()
    assert "Deploy key</th><td>none" in page and "not pinned" in page
    assert "Push webhook</th><td>none" in page and "No environment variables." in page
