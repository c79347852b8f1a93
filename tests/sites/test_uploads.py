"""Uploads (POST /api/v1/sites/{id}/releases): streamed to a root-only file, inspected before
anything is queued, refused with the one error shape; the file goes once the deploy is over."""

import gzip
import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from chom.models import Operation
from chom.operations import operation_cancel
from fleet.models import Vps
from sites.models import Release, Site
from sites.types import site_type
from sites.uploads import upload_receive

pytestmark = pytest.mark.django_db


# --- archives ------------------------------------------------------------------------------------


def tar_gz(*members: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    """Members: (name, data) for a file, or a TarInfo (links, devices, directories)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size, info.mode = len(member[1]), 0o644
                archive.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def entry(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def zip_of(*members: tuple[str, bytes] | zipfile.ZipInfo, data: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            if isinstance(member, zipfile.ZipInfo):
                archive.writestr(member, data)
            else:
                archive.writestr(*member)
    return buffer.getvalue()


def zip_info(name: str, *, mode: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


def encrypted_zip() -> bytes:
    """zipfile cannot write encrypted entries: set the flag in both headers by hand."""
    data = bytearray(zip_of(("secret", b"x")))
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    return bytes(data)


GOOD_TAR = tar_gz(entry("public", tarfile.DIRTYPE), ("public/index.html", b"<h1>hello</h1>"))
ZEROS = b"\0" * (3 * 1024 * 1024)

# (id, content type, body, error code, words of the message). Expansion limit in these tests:
# 1 MiB (settings below), entry limit 50.
HOSTILE = [
    ("absolute-path", "application/gzip", tar_gz(("/etc/cron.d/evil", b"x")), "unsafe_archive", "absolute"),
    ("dotdot", "application/gzip", tar_gz(("../evil", b"x")), "unsafe_archive", "'..'"),
    ("nested-dotdot", "application/gzip", tar_gz(("public/../../evil", b"x")), "unsafe_archive", "'..'"),
    ("absolute-symlink", "application/gzip", tar_gz(entry("passwd", tarfile.SYMTYPE, "/etc/passwd")),
     "unsafe_archive", "points outside"),
    ("escaping-symlink", "application/gzip", tar_gz(entry("up", tarfile.SYMTYPE, "public/../../x")),
     "unsafe_archive", "points outside"),
    # `p` -> "." makes "p/.." the parent of the release: a lexical check sees "x", the kernel "../x".
    ("symlink-through-symlink", "application/gzip",
     tar_gz(entry("p", tarfile.SYMTYPE, "."), entry("q", tarfile.SYMTYPE, "p/../etc")),
     "unsafe_archive", "points outside"),
    ("symlink-loop", "application/gzip",
     tar_gz(entry("a", tarfile.SYMTYPE, "b/x"), entry("b", tarfile.SYMTYPE, "a/y")),
     "unsafe_archive", "loop"),
    ("entry-below-symlink", "application/gzip",
     tar_gz(entry("out", tarfile.SYMTYPE, "."), ("out/index.html", b"x")),
     "unsafe_archive", "lies below"),
    ("entry-below-file", "application/gzip", tar_gz(("a", b"x"), ("a/b", b"y")),
     "unsafe_archive", "lies below"),
    ("hard-link", "application/gzip", tar_gz(("a", b"x"), entry("b", tarfile.LNKTYPE, "a")),
     "unsafe_archive", "hard link"),
    ("hard-link-outside", "application/gzip", tar_gz(entry("shadow", tarfile.LNKTYPE, "/etc/shadow")),
     "unsafe_archive", "hard link"),
    ("char-device", "application/gzip", tar_gz(entry("null", tarfile.CHRTYPE)), "unsafe_archive", "device"),
    ("block-device", "application/gzip", tar_gz(entry("sda", tarfile.BLKTYPE)), "unsafe_archive", "device"),
    ("fifo", "application/gzip", tar_gz(entry("pipe", tarfile.FIFOTYPE)), "unsafe_archive", "FIFO"),
    ("control-characters", "application/gzip", tar_gz(("evil\nname", b"x")), "unsafe_archive", "control"),
    ("duplicate", "application/gzip", tar_gz(("index.html", b"a"), ("./index.html", b"b")),
     "unsafe_archive", "twice"),
    ("too-many-entries", "application/gzip", tar_gz(*[(f"f{i}", b"") for i in range(51)]),
     "unsafe_archive", "more than 50 entries"),
    ("gzip-bomb", "application/gzip", tar_gz(("zeros", ZEROS)), "unsafe_archive", "expands to more than"),
    ("empty", "application/gzip", tar_gz(), "unsafe_archive", "empty"),
    ("not-a-tar", "application/gzip", gzip.compress(b"just text, no tar " * 100),
     "invalid_archive", "cannot be read"),
    ("not-gzip", "application/gzip", b"PK\x03\x04 but this is a zip", "invalid_archive", "not a gzip"),
    ("zip-dotdot", "application/zip", zip_of(("../evil", b"x")), "unsafe_archive", "'..'"),
    ("zip-absolute", "application/zip", zip_of(("/etc/evil", b"x")), "unsafe_archive", "absolute"),
    ("zip-backslash", "application/zip", zip_of(("..\\..\\evil", b"x")), "unsafe_archive", "backslash"),
    ("zip-symlink", "application/zip",
     zip_of(zip_info("link", mode=stat.S_IFLNK | 0o777), data=b"/etc/passwd"),
     "unsafe_archive", "symlink"),
    ("zip-fifo", "application/zip", zip_of(zip_info("pipe", mode=stat.S_IFIFO | 0o644)),
     "unsafe_archive", "FIFO"),
    ("zip-encrypted", "application/zip", encrypted_zip(), "unsafe_archive", "encrypted"),
    ("zip-duplicate", "application/zip", zip_of(("a", b"1"), ("a", b"2")), "unsafe_archive", "twice"),
    ("zip-bomb", "application/zip", zip_of(("zeros", ZEROS)), "unsafe_archive", "expands to more than"),
    ("zip-too-many-entries", "application/zip", zip_of(*[(f"f{i}", b"") for i in range(51)]),
     "unsafe_archive", "more than 50 entries"),
    ("not-a-zip", "application/zip", GOOD_TAR, "invalid_archive", "not a zip"),
]  # fmt: skip


def huge_declared_size() -> bytes:
    """A tar header saying 10 GiB follow, and then only a few bytes: refused by the header."""
    header = tarfile.TarInfo("huge")
    header.size = 10 * 1024**3
    return gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT) + b"x" * 512)


HOSTILE.append(("huge-declared-size", "application/gzip", huge_declared_size(), "unsafe_archive", "expands"))


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def active_vps(db) -> Vps:
    return Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10,
        php_versions=["8.2"],
    )  # fmt: skip


@pytest.fixture
def uploads(settings, tmp_path) -> Path:
    settings.UPLOADS_DIR = str(tmp_path / "uploads")
    settings.UPLOAD_MAX_ENTRIES = 50
    settings.UPLOAD_MAX_EXPANSION = 1 / 500  # pro: 500 MB upload limit -> 1 MiB expanded
    return tmp_path / "uploads"


def make_site(alice, active_vps, type_: str = "static") -> Site:
    return Site.objects.create(
        tenant=alice.tenant, vps=active_vps, domain=f"up-{type_}.example.com", type=type_,
        status="active", unix_user="site9",
    )  # fmt: skip


def post(persona, site: Site, body: bytes, content_type: str = "application/gzip", **extra):
    return persona.client().post(
        f"/api/v1/sites/{site.pk}/releases", data=body, content_type=content_type, **extra
    )


def assert_nothing_queued(site: Site, uploads: Path) -> None:
    assert not Operation.objects.filter(target_id=str(site.pk)).exists()
    assert not site.releases.exists()
    assert not uploads.exists() or list(uploads.iterdir()) == []


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content_type", "body", "code", "words"), [c[1:] for c in HOSTILE],
                         ids=[c[0] for c in HOSTILE])  # fmt: skip
def test_it_refuses_every_hostile_archive_before_anything_is_queued(
    alice, active_vps, uploads, content_type, body, code, words
):
    site = make_site(alice, active_vps)
    response = post(alice, site, body, content_type)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"], error
    assert_nothing_queued(site, uploads)


def test_it_accepts_a_tarball_and_queues_its_deploy(alice, active_vps, uploads, settings):
    # The body is streamed: Django's in-memory cap on request bodies does not apply.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    site = make_site(alice, active_vps, "php")
    response = post(alice, site, GOOD_TAR, "application/x-gzip")

    assert response.status_code == 202, response.content
    body = response.json()
    sha256 = hashlib.sha256(GOOD_TAR).hexdigest()
    assert (body["id"], body["sha256"], body["size"]) == (site.pk, sha256, len(GOOD_TAR))
    op = Operation.objects.get(id=body["operation"]["id"])
    assert (op.kind, op.status, op.params["release"]) == ("site.deploy", "queued", body["release"])
    assert op.params["upload"] == {
        "file": f"site{site.pk}-{body['release']}.tar.gz", "sha256": sha256, "size": len(GOOD_TAR),
        "format": "tar.gz",
    }  # fmt: skip
    release = Release.objects.get(site=site, name=body["release"])
    assert (release.source, release.commit, release.status) == ("upload", f"sha256:{sha256}", "building")
    stored = uploads / op.params["upload"]["file"]
    assert stored.read_bytes() == GOOD_TAR
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stat.S_IMODE(uploads.stat().st_mode) == 0o700


def test_it_accepts_a_zip(alice, active_vps, uploads):
    site = make_site(alice, active_vps)
    archive = zip_of(("index.html", b"<h1>zip</h1>"), ("css/", b""), ("css/site.css", b"h1{}"))
    response = post(alice, site, archive, "application/zip")
    assert response.status_code == 202, response.content
    assert Operation.objects.get(id=response.json()["operation"]["id"]).params["upload"]["format"] == "zip"


def test_it_accepts_symlinks_that_stay_inside_the_archive(alice, active_vps, uploads):
    site = make_site(alice, active_vps)
    archive = tar_gz(
        entry("public", tarfile.DIRTYPE),
        ("public/a.html", b"a"),
        entry("public/latest", tarfile.SYMTYPE, "a.html"),
        entry("docs", tarfile.SYMTYPE, "public/../public"),
        entry("alias", tarfile.SYMTYPE, "docs/latest"),
    )
    assert post(alice, site, archive).status_code == 202


def test_it_refuses_a_declared_length_above_the_tier_limit_with_413_without_reading(
    alice, active_vps, uploads
):
    site = make_site(alice, active_vps)
    too_big = str(500 * 1024 * 1024 + 1)  # pro: 500 MB
    response = post(alice, site, GOOD_TAR, CONTENT_LENGTH=too_big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
    assert "500 MB" in response.json()["error"]["message"]
    assert_nothing_queued(site, uploads)


def test_it_stops_reading_a_body_past_the_limit(uploads):
    body = io.BytesIO(b"\x1f\x8b" + b"x" * (5 * 1024 * 1024))
    upload = upload_receive(stream=body, fmt="tar.gz", name="s1-r1", limit_bytes=2 * 1024 * 1024)
    assert upload.size > 2 * 1024 * 1024
    assert body.tell() <= 3 * 1024 * 1024 + 1  # one chunk past the limit, never the rest


def test_it_wants_a_length_an_archive_type_and_a_static_or_php_site(alice, active_vps, uploads):
    site = make_site(alice, active_vps)
    no_body = alice.client().post(f"/api/v1/sites/{site.pk}/releases", content_type="application/gzip")
    assert (no_body.status_code, no_body.json()["error"]["code"]) == (411, "length_required")
    as_json = post(alice, site, b"{}", "application/json")
    assert (as_json.status_code, as_json.json()["error"]["code"]) == (415, "unsupported_media_type")
    laravel = make_site(alice, active_vps, "laravel")
    refused = post(alice, laravel, GOOD_TAR)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "upload_unsupported")
    assert "laravel" in refused.json()["error"]["message"]
    assert_nothing_queued(site, uploads)
    assert_nothing_queued(laravel, uploads)


def test_it_refuses_a_suspended_site_and_a_viewer(alice, victor, active_vps, uploads):
    site = make_site(alice, active_vps)
    assert post(victor, site, GOOD_TAR).status_code == 403
    Site.objects.filter(pk=site.pk).update(status="suspended")
    assert post(alice, site, GOOD_TAR).status_code == 409
    assert_nothing_queued(site, uploads)


def test_it_removes_the_stored_archive_once_the_deploy_is_over(alice, active_vps, uploads):
    site = make_site(alice, active_vps)
    response = post(alice, site, GOOD_TAR)
    op = Operation.objects.get(id=response.json()["operation"]["id"])
    stored = uploads / op.params["upload"]["file"]
    assert stored.exists()
    operation_cancel(operation=op)
    assert not stored.exists()
    assert Release.objects.get(site=site, name=op.params["release"]).status == "failed"
    assert os.listdir(uploads) == []


def test_it_deletes_the_archive_when_the_tenant_has_too_many_operations_pending(alice, active_vps, uploads):
    site = make_site(alice, active_vps)
    for _ in range(alice.tenant.limits.max_pending_operations):
        Operation.objects.create(
            kind="site.ssl", tenant=alice.tenant, target_type="sites.site", target_id="0",
            requested_by_tenant=True,
        )  # fmt: skip
    response = post(alice, site, GOOD_TAR)
    assert (response.status_code, response.json()["error"]["code"]) == (429, "too_many_operations")
    assert not site.releases.exists()
    assert list(uploads.iterdir()) == []


@pytest.mark.parametrize("type_", ["static", "php"])
def test_it_redeploys_a_site_without_a_repository_from_a_copy_of_its_current_release(
    alice, active_vps, uploads, type_
):
    """Nothing lost: after an upload, a redeploy (new aliases, another PHP version, POST /deploy)
    copies the current release on the VPS instead of writing the placeholder page over it."""
    site = make_site(alice, active_vps, type_)
    assert site_type(type_).source(site)["type"] == "placeholder"  # nothing deployed yet
    Site.objects.filter(pk=site.pk).update(current_release="20261127T041500-ab12cd")
    response = alice.client().patch(
        f"/api/v1/sites/{site.pk}", {"aliases": [f"www.{site.domain}"]}, format="json"
    )
    assert response.status_code == 202, response.content
    op = Operation.objects.get(kind="site.deploy", target_id=str(site.pk))
    assert "upload" not in op.params  # what it deploys is decided when it runs
    site.refresh_from_db()
    assert site_type(type_).source(site) == {"type": "copy", "release": "20261127T041500-ab12cd"}
    site.repository_url = "https://git.example.com/acme/site.git"
    assert site_type(type_).source(site)["type"] == "git"  # a repository is still the source
