"""Uploads end to end: a static site deployed from a tarball, then a zip, served by a real VPS;
a redeploy (new alias) keeps the uploaded content; every hostile archive refused before anything
reaches the VPS; an oversized body answered 413."""

import hashlib
import io
import zipfile

import pytest
import requests

from chom.models import Operation
from chom.operations import operation_execute
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.models import Release, Site
from tests.sites.test_uploads import HOSTILE, tar_gz

pytestmark = pytest.mark.e2e


def _run(op_id) -> Operation:
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())
    return op


def _upload(persona, site, body: bytes, content_type: str, **extra):
    return persona.client().post(
        f"/api/v1/sites/{site.pk}/releases", data=body, content_type=content_type, **extra
    )


def _page(vps, domain: str) -> str:
    return requests.get(f"http://{vps.ip_address}/", headers={"Host": domain}, timeout=5).text


def _sh(vps, *argv) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    return result.stdout + result.stderr


def _state(vps, site) -> tuple[str, str, str]:
    """What a change would show: the releases on the VPS, its uploads directory, the page."""
    releases = _sh(vps, "ls", "-la", "--time-style=full-iso", f"/var/www/{site.unix_user}/releases")
    uploads = _sh(vps, "find", "/var/lib/chom/uploads", "-mindepth", "1")
    return releases, uploads, _page(vps, site.domain)


def test_it_deploys_uploaded_archives_and_refuses_hostile_ones_with_nothing_changed(
    alice, make_vps, settings, tmp_path
):
    settings.UPLOADS_DIR = str(tmp_path / "uploads")
    settings.UPLOAD_MAX_ENTRIES = 50  # the table's limits (tests/sites/test_uploads.py)
    settings.UPLOAD_MAX_EXPANSION = 1 / 500
    vps = make_vps("e2e-uploads")
    created = alice.client().post("/api/v1/sites", {"domain": "upload.test", "type": "static"}, format="json")
    assert created.status_code == 202, created.content
    _run(created.json()["operation"]["id"])
    site = Site.objects.get(pk=created.json()["id"])

    tarball = tar_gz(("public/index.html", b"<h1>from a tarball</h1>"), ("public/about.html", b"about"))
    response = _upload(alice, site, tarball, "application/gzip")
    assert response.status_code == 202, response.content
    assert response.json()["sha256"] == hashlib.sha256(tarball).hexdigest()
    _run(response.json()["operation"]["id"])
    assert "<h1>from a tarball</h1>" in _page(vps, "upload.test")
    release = Release.objects.get(site=site, name=response.json()["release"])
    assert (release.status, release.source) == ("active", "upload")
    assert release.commit == f"sha256:{response.json()['sha256']}"

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # Modes as the zip tool keeps them (a str name alone would make it 0600: nginx, in the
        # site's group, could not read it; the agent keeps an archive's modes, minus others' bits).
        info = zipfile.ZipInfo("index.html")
        info.external_attr = 0o644 << 16
        archive.writestr(info, "<h1>from a zip</h1>")
    response = _upload(alice, site, buffer.getvalue(), "application/zip")
    assert response.status_code == 202, response.content
    _run(response.json()["operation"]["id"])
    assert "<h1>from a zip</h1>" in _page(vps, "upload.test")
    uploaded = Release.objects.get(site=site, name=response.json()["release"])

    # A redeploy (here for a new alias) builds the next release from a copy of the uploaded one:
    # nothing is lost to the placeholder page.
    patched = alice.client().patch(
        f"/api/v1/sites/{site.pk}", {"aliases": ["www.upload.test"]}, format="json"
    )
    assert patched.status_code == 202, patched.content
    _run(patched.json()["operation"]["id"])
    site.refresh_from_db()
    assert site.current_release != uploaded.name
    copied = Release.objects.get(site=site, name=site.current_release)
    assert (copied.status, copied.source, copied.commit) == ("active", "copy", uploaded.commit)
    assert _sh(vps, "readlink", f"/var/www/{site.unix_user}/current").strip() == f"releases/{copied.name}"
    for host in ("upload.test", "www.upload.test"):
        assert "<h1>from a zip</h1>" in _page(vps, host)
    # Neither CHOM nor the VPS keeps an archive once its deploy is over.
    assert list((tmp_path / "uploads").iterdir()) == []
    before = _state(vps, site)
    assert before[1] == ""

    operations = Operation.objects.count()
    for name, content_type, body, code, _ in HOSTILE:
        response = _upload(alice, site, body, content_type)
        assert (response.status_code, response.json()["error"]["code"]) == (400, code), (
            name,
            response.content,
        )
    too_big = _upload(alice, site, tarball, "application/gzip", CONTENT_LENGTH=str(500 * 1024 * 1024 + 1))
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "upload_too_large"
    assert Operation.objects.count() == operations
    assert _state(vps, site) == before
    assert list((tmp_path / "uploads").iterdir()) == []
