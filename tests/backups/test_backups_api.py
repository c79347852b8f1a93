"""The backups API: tenant-scoped like sites, 202 + Operation for long actions."""

import pytest
import requests

from backups import services
from backups.models import Backup
from chom.models import Operation
from fleet.models import Vps
from sites.models import Site
from tests.backups.fixtures import ScriptedTransport, gz, tar_gz


@pytest.fixture
def vps(db):
    return Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10", status="active")


def _site(tenant, vps, domain, n):
    return Site.objects.create(
        tenant=tenant,
        vps=vps,
        domain=domain,
        type="php",
        status="active",
        unix_user=f"site{n}",
        db_name=f"site{n}",
        db_user=f"site{n}",
        current_release="20240101T000000-abc123",
    )


@pytest.fixture
def site(alice, vps):
    return _site(alice.tenant, vps, "shop.example.com", 1)


@pytest.fixture
def done(s3, site):
    backup = Backup.objects.create(site=site)
    transport = ScriptedTransport(dump=gz("CREATE TABLE `t` (\n);\n"), archive=tar_gz({"shared/a": b"a"}))
    services.backup_perform(backup=backup, transport=transport)
    backup.refresh_from_db()
    return backup


def test_it_queues_a_backup_with_202_and_the_operation(s3, alice, site):
    response = alice.client().post(f"/api/v1/sites/{site.pk}/backups", {"kind": "database"}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    op = Operation.objects.get(id=body["operation"]["id"])
    assert (op.kind, op.status, op.target_id) == ("backup.run", "queued", str(site.pk))
    assert body["status"] == "queued" and body["kind"] == "database" and body["trigger"] == "manual"
    assert response["Location"] == f"/api/v1/backups/{body['id']}"


def test_it_answers_503_when_backups_are_not_configured(alice, site, settings):
    settings.S3_BUCKET = ""
    response = alice.client().post(f"/api/v1/sites/{site.pk}/backups", {}, format="json")
    assert response.status_code == 503 and response.json()["error"]["code"] == "backups_unavailable"


def test_it_lists_and_shows_backups_with_sizes_checksums_and_verification(alice, site, done):
    listed = alice.client().get(f"/api/v1/sites/{site.pk}/backups").json()["results"]
    assert [b["id"] for b in listed] == [done.pk]
    body = alice.client().get(f"/api/v1/backups/{done.pk}").json()
    assert body["status"] == "succeeded" and body["size_bytes"] == done.size_bytes
    assert body["sha256"] == done.manifest_sha256 and body["verified_at"] is None
    assert body["artefacts"]["database"]["sha256"] == done.artefacts["database"]["sha256"]
    assert body["manifest"]["database"]["tables"] == {"t": 0}


def test_it_hides_another_tenants_backups_and_sites_with_404(charlie, site, done):
    client = charlie.client()
    assert client.get(f"/api/v1/backups/{done.pk}").status_code == 404
    assert client.get(f"/api/v1/sites/{site.pk}/backups").status_code == 404
    assert client.post(f"/api/v1/sites/{site.pk}/backups", {}, format="json").status_code == 404
    for action in ("restore", "verify"):
        assert client.post(f"/api/v1/backups/{done.pk}/{action}", {}, format="json").status_code == 404
    assert client.get(f"/api/v1/backups/{done.pk}/download").status_code == 404


def test_it_refuses_restoring_into_another_tenants_site_with_404(alice, charlie, vps, done):
    theirs = _site(charlie.tenant, vps, "other.example.com", 9)
    response = alice.client().post(
        f"/api/v1/backups/{done.pk}/restore", {"target_site": theirs.pk}, format="json"
    )
    assert response.status_code == 404
    assert not Operation.objects.filter(kind="backup.restore").exists()


def test_it_queues_a_restore_into_the_same_or_another_site_of_the_tenant(alice, vps, site, done):
    same = alice.client().post(f"/api/v1/backups/{done.pk}/restore", {}, format="json")
    assert same.status_code == 202, same.content
    op = Operation.objects.get(id=same.json()["operation"]["id"])
    assert op.kind == "backup.restore" and op.params == {"backup_id": done.pk, "target_site_id": site.pk}
    other = _site(alice.tenant, vps, "staging.example.com", 2)
    response = alice.client().post(
        f"/api/v1/backups/{done.pk}/restore", {"target_site": other.pk}, format="json"
    )
    assert response.status_code == 202
    assert Operation.objects.get(id=response.json()["operation"]["id"]).target_id == str(other.pk)


def test_it_refuses_to_restore_a_failed_backup_with_409(s3, alice, site):
    failed = Backup.objects.create(site=site, status="failed", error="boom")
    response = alice.client().post(f"/api/v1/backups/{failed.pk}/restore", {}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "backup_not_restorable"


def test_it_queues_a_restore_drill(alice, done):
    response = alice.client().post(f"/api/v1/backups/{done.pk}/verify")
    assert response.status_code == 202
    assert Operation.objects.get(id=response.json()["operation"]["id"]).kind == "backup.verify"


def test_a_viewer_cannot_back_up_or_restore(victor, site, done):
    assert victor.client().post(f"/api/v1/sites/{site.pk}/backups", {}, format="json").status_code == 403
    assert victor.client().post(f"/api/v1/backups/{done.pk}/restore", {}, format="json").status_code == 403
    assert victor.client().get(f"/api/v1/backups/{done.pk}").status_code == 200


def test_it_hands_out_short_lived_presigned_download_urls(alice, done, settings):
    body = alice.client().get(f"/api/v1/backups/{done.pk}/download").json()
    assert set(body["urls"]) == {"database", "files", "manifest"} and body["expires_in"] == 300
    assert "X-Amz-Expires=300" in body["urls"]["files"]
    fetched = requests.get(body["urls"]["database"], timeout=5)
    assert fetched.status_code == 200
    import hashlib

    assert hashlib.sha256(fetched.content).hexdigest() == done.artefacts["database"]["sha256"]
    one = alice.client().get(f"/api/v1/backups/{done.pk}/download?artefact=manifest").json()
    assert list(one["urls"]) == ["manifest"]


def test_it_counts_backup_storage_in_tenant_usage(alice, done):
    usage = alice.client().get("/api/v1/tenant").json()["usage"]
    assert usage["backup_storage_bytes"] == done.size_bytes
    assert usage["backup_storage_gb"] == round(done.size_bytes / 10**9, 3)


def test_it_reports_backup_storage_gb_as_one_type_everywhere(alice, done):
    """0.0 and 0.004 alike, in /tenant and /billing: a client never has to handle an int."""
    for url in ("/api/v1/tenant", "/api/v1/billing"):
        assert isinstance(alice.client().get(url).json()["usage"]["backup_storage_gb"], float), url
    Backup.objects.filter(site__tenant=alice.tenant).delete()
    for url in ("/api/v1/tenant", "/api/v1/billing"):
        text = alice.client().get(url).content.decode().replace(" ", "")
        assert '"backup_storage_gb":0.0' in text, (url, text)


def test_downloading_a_backup_is_for_owners_and_admins_with_a_write_token_and_is_audited(
    alice, bob, victor, done
):
    from chom.models import AuditEvent

    for persona in (bob, victor):  # a member (write token) and a viewer: the dump holds the site's secrets
        response = persona.client().get(f"/api/v1/backups/{done.pk}/download")
        assert response.status_code == 403, response.content
    assert not AuditEvent.objects.filter(action="backup.downloaded").exists()
    assert alice.client().get(f"/api/v1/backups/{done.pk}/download").status_code == 200
    event = AuditEvent.objects.get(action="backup.downloaded")
    assert event.target == f"backup:{done.pk}" and event.actor == alice.user
    assert event.data["artefacts"] == ["database", "files", "manifest"]


def test_download_lists_only_objects_that_were_uploaded(alice, site, s3):
    """Found by the API fuzzing: an artefact without a key made boto3 fail (503) instead of a 404."""
    partial = Backup.objects.create(site=site, status="succeeded", artefacts={"files": {"key": ""}})
    response = alice.client().get(f"/api/v1/backups/{partial.pk}/download")
    assert (response.status_code, response.json()["urls"]) == (200, {})
    manifest = alice.client().get(f"/api/v1/backups/{partial.pk}/download?artefact=manifest")
    assert manifest.status_code == 404 and manifest.json()["error"]["code"] == "not_found"
