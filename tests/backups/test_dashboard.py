import pytest
from django.template import Context, Template

from backups.models import Backup
from chom.models import AuditEvent, Operation
from fleet.models import Vps
from sites.models import Site


@pytest.fixture
def site(alice):
    vps = Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10", status="active")
    return Site.objects.create(tenant=alice.tenant, vps=vps, domain="shop.example.com", type="static",
                               status="active", unix_user="site1")  # fmt: skip


def test_the_site_panel_lists_backups_with_restore_and_verify_buttons(site):
    done = Backup.objects.create(site=site, status="succeeded", size_bytes=2048)
    Backup.objects.create(site=site, status="failed", error="S3 upload failed: timeout")
    html = Template("{% load backups_tags %}{% site_backups site %}").render(Context({"site": site}))
    assert f"/backups/{done.pk}/restore" in html and f"/backups/{done.pk}/verify" in html
    assert "S3 upload failed: timeout" in html and "2.0\xa0KB" in html


def test_staff_can_queue_a_restore_from_the_dashboard(client, site, s3):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_user("root@chom.test", "root@chom.test", "pw", is_staff=True)
    client.force_login(admin)
    done = Backup.objects.create(site=site, status="succeeded", artefacts={"files": {"key": "k"}})
    response = client.post(f"/backups/{done.pk}/restore")
    op = Operation.objects.get(kind="backup.restore")
    assert response.status_code == 302 and response["Location"] == f"/operations/{op.id}/"
    assert client.get(f"/backups/{done.pk}/").status_code == 200


def test_a_refused_dashboard_action_goes_back_to_its_page_with_the_reason(client, site, settings):
    """No S3 configured: the service refuses, the dashboard shows why (no 500, no try/except in views)."""
    from django.contrib.auth import get_user_model

    settings.S3_BUCKET = ""
    admin = get_user_model().objects.create_user("root@chom.test", "root@chom.test", "pw", is_staff=True)
    client.force_login(admin)
    page = f"http://testserver/sites/{site.pk}/"
    response = client.post(f"/backups/sites/{site.pk}/create", HTTP_REFERER=page)
    assert response.status_code == 302 and response["Location"] == page
    assert not Operation.objects.filter(kind="backup.run").exists()
    shown = [str(m) for m in client.get(page).context["messages"]]
    assert shown == ["Backups are not configured on this installation."]


# --- download, run, restore: the site page's and the backup page's forms -----------------------------


@pytest.fixture
def done(site):
    """A succeeded backup: files and their index in S3, and the manifest."""
    artefacts = {
        "files": {"key": "sites/1/b1/files.tar.gz", "size": 7, "sha256": "0" * 64},
        "files_index": {"key": "sites/1/b1/files.idx", "size": 1, "sha256": "0" * 64},
    }
    return Backup.objects.create(
        site=site, status="succeeded", artefacts=artefacts, manifest_key="sites/1/b1/manifest.json"
    )


def test_it_downloads_one_artefact_through_its_short_lived_url_and_audits_it(
    admin_client, admin_user, done, s3
):
    import requests

    from devstack.s3 import BUCKET

    s3.put_object(Bucket=BUCKET, Key="sites/1/b1/files.tar.gz", Body=b"tarball")
    response = admin_client.post(f"/backups/{done.pk}/download", {"artefact": "files"})
    assert response.status_code == 302
    assert requests.get(response["Location"], timeout=5).content == b"tarball"
    event = AuditEvent.objects.get(action="backup.downloaded")
    assert (event.actor, event.target, event.data) == (
        admin_user, f"backup:{done.pk}", {"site": "shop.example.com", "artefacts": ["files"]}
    )  # fmt: skip


def test_it_lists_every_download_link_when_no_artefact_is_chosen(admin_client, done, s3):
    response = admin_client.post(f"/backups/{done.pk}/download")
    assert response.status_code == 200 and sorted(response.context["urls"]) == ["files", "manifest"]
    assert "sites/1/b1/manifest.json" in response.context["urls"]["manifest"]
    assert AuditEvent.objects.get(action="backup.downloaded").data["artefacts"] == ["files", "manifest"]


def test_it_offers_the_downloads_and_restore_targets_on_the_backup_page(admin_client, done, site):
    page = admin_client.get(f"/backups/{done.pk}/").content.decode()
    assert 'value="files">Download files' in page and 'value="manifest">Download manifest' in page
    assert 'value="files_index"' not in page
    assert f'<option value="{site.pk}" selected>shop.example.com</option>' in page


def test_it_hands_out_nothing_for_a_backup_that_did_not_succeed(admin_client, site, s3):
    failed = Backup.objects.create(site=site, status="failed", artefacts={"files": {"key": "k"}})
    page = f"http://testserver/backups/{failed.pk}/"
    response = admin_client.post(f"/backups/{failed.pk}/download", {"artefact": "files"}, HTTP_REFERER=page)
    assert response.status_code == 302 and response["Location"] == page
    assert [str(m) for m in admin_client.get(page).context["messages"]] == ["This backup is failed."]
    assert not AuditEvent.objects.filter(action="backup.downloaded").exists()


def test_it_sends_a_non_staff_user_to_log_in_before_any_download(client, alice, done, s3):
    client.force_login(alice.user)
    response = client.post(f"/backups/{done.pk}/download", {"artefact": "files"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert not AuditEvent.objects.filter(action="backup.downloaded").exists()


def test_it_refuses_a_download_without_the_csrf_token(admin_user, done, s3):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(f"/backups/{done.pk}/download", {"artefact": "files"}).status_code == 403
    assert not AuditEvent.objects.filter(action="backup.downloaded").exists()


def test_it_backs_up_what_staff_chose(admin_client, admin_user, site, s3):
    response = admin_client.post(f"/backups/sites/{site.pk}/create", {"kind": "files"})
    op = Operation.objects.get(kind="backup.run")
    assert response.status_code == 302 and response["Location"] == f"/operations/{op.id}/"
    backup = Backup.objects.get()
    assert (backup.kind, backup.trigger, op.created_by, op.requested_by_tenant) == (
        "files", "manual", admin_user, False
    )  # fmt: skip


def test_it_restores_into_another_site_of_the_same_tenant(admin_client, done, site, s3):
    other = Site.objects.create(tenant=site.tenant, vps=site.vps, domain="copy.example.com", type="static",
                                status="active", unix_user="site9")  # fmt: skip
    response = admin_client.post(f"/backups/{done.pk}/restore", {"target_site": other.pk})
    op = Operation.objects.get(kind="backup.restore")
    assert response.status_code == 302 and response["Location"] == f"/operations/{op.id}/"
    assert (op.target_id, op.params) == (str(other.pk), {"backup_id": done.pk, "target_site_id": other.pk})


def test_it_never_restores_into_another_tenants_site(admin_client, done, site, charlie, s3):
    theirs = Site.objects.create(tenant=charlie.tenant, vps=site.vps, domain="theirs.example.com",
                                 type="static", status="active", unix_user="site8")  # fmt: skip
    response = admin_client.post(f"/backups/{done.pk}/restore", {"target_site": theirs.pk})
    assert response.status_code == 404 and not Operation.objects.exists()
