"""release-create from an uploaded archive (source type "upload"): CHOM copied it, root-only, to
/var/lib/chom/uploads; the agent verifies it, extracts it as the site user and removes it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import (
    SITE,
    Agent,
    R,
    mode_owner,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
)

pytestmark = pytest.mark.real


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def place(agent: Agent, data: bytes, fmt: str = "tar.gz", release: str = R[0], mode: int = 0o600) -> dict:
    """The upload where CHOM's copy puts it, and the release-create payload naming it."""
    path = f"/var/lib/chom/uploads/{release}.{fmt}"
    target = agent.path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)
    source = {"type": "upload", "path": path, "sha256": hashlib.sha256(data).hexdigest(), "format": fmt}
    return {"name": SITE, "release": release, "source": source}


def test_it_builds_a_release_from_an_uploaded_tarball_and_removes_the_upload(
    agent: Agent, site: dict[str, Any]
) -> None:
    data = tar_gz({"public/index.html": b"<h1>uploaded</h1>", "README": b"x"})
    payload = place(agent, data)
    out = agent.ok("release-create", payload)

    assert out["data"]["commit"] == "sha256:" + hashlib.sha256(data).hexdigest()
    index = agent.path(f"/var/www/site1/releases/{R[0]}/public/index.html")
    assert index.read_text() == "<h1>uploaded</h1>"
    assert mode_owner(index)[1] == site["uid"]  # extracted as the site user, never root
    assert not agent.path(payload["source"]["path"]).exists()

    # Again (a retried operation copies the archive again): already built, the copy removed.
    place(agent, data)
    again = agent.ok("release-create", payload)
    assert again["changed"] is False
    assert not agent.path(payload["source"]["path"]).exists()


def test_it_builds_a_release_from_an_uploaded_zip(agent: Agent, site: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "zip!")
    agent.ok("release-create", place(agent, buffer.getvalue(), "zip"))
    release = agent.path(f"/var/www/site1/releases/{R[0]}")
    assert (release / "index.html").read_text() == "zip!"
    assert os.readlink(release / "public") == "."


def test_it_refuses_an_upload_whose_sha256_differs_and_removes_it(agent: Agent, site: dict[str, Any]) -> None:
    payload = place(agent, tar_gz({"index.html": b"x"}))
    payload["source"]["sha256"] = "0" * 64
    result = agent("release-create", payload)
    assert (result.error["code"], result.error["step"]) == ("checksum_mismatch", "verify")
    assert list(agent.path("/var/www/site1/releases").iterdir()) == []
    assert not agent.path(payload["source"]["path"]).exists()


def test_it_refuses_an_upload_that_is_a_symlink_or_readable_by_others(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    payload = place(agent, tar_gz({"index.html": b"x"}), mode=0o644)
    result = agent("release-create", payload)
    assert (result.error["code"], result.error["step"]) == ("source_failed", "upload")
    assert "root-only regular file" in result.error["message"]

    secret = base / "secret.tar.gz"
    secret.write_bytes(tar_gz({"index.html": b"x"}))
    secret.chmod(0o600)
    link = agent.path(payload["source"]["path"])
    link.symlink_to(secret)
    result = agent("release-create", payload)
    assert (result.error["code"], result.error["step"]) == ("source_failed", "upload")
    assert list(agent.path("/var/www/site1/releases").iterdir()) == []
    assert secret.exists()  # the link is removed, never what it points at


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("/etc/shadow", "tar.gz"),
        ("/var/lib/chom/uploads/../../../etc/shadow.tar.gz", "tar.gz"),
        (f"/var/lib/chom/uploads/{R[0]}.tar.gz", "zip"),
        (f"/var/lib/chom/uploads/{R[0]}.tar", "tar"),
    ],
)
def test_it_refuses_an_upload_source_outside_the_uploads_directory(
    agent: Agent, site: dict[str, Any], path: str, fmt: str
) -> None:
    source = {"type": "upload", "path": path, "sha256": "0" * 64, "format": fmt}
    result = agent("release-create", {"name": SITE, "release": R[0], "source": source})
    assert result.error["code"] == "invalid_input"


# --------------------------------------------------------------------------- source "copy"
# A site without a repository redeploys (new aliases, another PHP version) from a copy of its
# current release: its uploaded content is the only copy of its code.


def copy_payload(release: str, origin: str, **extra: Any) -> dict[str, Any]:
    return {"name": SITE, "release": release, "source": {"type": "copy", "release": origin}, **extra}


def test_it_copies_the_current_release_with_its_modes_and_links_as_links(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("index.html", b"<h1>uploaded</h1>"), ("bin/run.sh", b"#!/bin/sh\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("latest")
        link.type, link.linkname = tarfile.SYMTYPE, "index.html"
        archive.addfile(link)
    uploaded = agent.ok("release-create", place(agent, buffer.getvalue()))["data"]["commit"]
    origin = agent.path(f"/var/www/site1/releases/{R[0]}")
    uid, gid = site["uid"], site["gid"]
    (origin / "index.html").chmod(0o604)
    os.utime(origin / "index.html", (1_600_000_000, 1_600_000_000))
    (origin / "bin").chmod(0o2550)  # read-only: filled before its mode is set
    # What the site user may have put in its release since: a file only its own group reads, a
    # FIFO, links out of the tree (a directory one too), the .env link.
    secret = origin / "secret.php"
    secret.write_text("<?php // db password")
    secret.chmod(0o640)
    os.mkfifo(origin / "pipe")
    (origin / "passwd").symlink_to("/etc/passwd")
    (origin / "root").symlink_to("/")
    (origin / ".env").symlink_to("../../shared/.env")
    for path in (secret, origin / "pipe", origin / "passwd", origin / "root", origin / ".env"):
        os.lchown(path, uid, gid)

    out = agent.ok("release-create", copy_payload(R[1], R[0]))

    copy = agent.path(f"/var/www/site1/releases/{R[1]}")
    assert out["data"]["commit"] == uploaded  # the same content as the upload
    assert (copy / "index.html").read_text() == "<h1>uploaded</h1>"
    assert mode_owner(copy / "index.html") == (0o604, uid, 33)
    assert (copy / "index.html").stat().st_mtime == 1_600_000_000
    assert mode_owner(copy / "bin" / "run.sh") == (0o750, uid, 33)
    assert mode_owner(copy / "bin")[0] & 0o777 == 0o550
    assert mode_owner(copy)[0] == 0o2750  # setgid www-data kept: nginx reads what PHP writes
    assert mode_owner(copy / "secret.php") == (0o640, uid, gid)  # never readable by nginx's group
    assert os.readlink(copy / "latest") == "index.html"
    assert os.readlink(copy / "passwd") == "/etc/passwd" and os.readlink(copy / "root") == "/"
    assert os.readlink(copy / "public") == "."
    assert not os.path.lexists(copy / "pipe") and not os.path.lexists(copy / ".env")
    marker = json.loads((copy / ".chom-release.json").read_text())
    assert (marker["release"], marker["source"]) == (R[1], "copy")
    assert any("skipped" in line and "pipe" in line for line in out["log"]), out["log"]
    assert mode_owner(origin / "index.html")[1] == uid  # the original is untouched
    assert (origin / "pipe").exists()


def test_it_refuses_a_release_to_copy_that_is_a_link_missing_or_itself(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    # Root reads the marker by descriptor, the site user copies: a releases/R link to a tree the
    # site user cannot read (or one it can) is never followed.
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".chom-release.json").write_text(json.dumps({"release": R[0], "commit": "x"}))
    (elsewhere / "shadow").write_text("secret")
    link = agent.path(f"/var/www/site1/releases/{R[0]}")
    link.symlink_to(elsewhere)
    os.lchown(link, site["uid"], site["gid"])
    for payload, code in (
        (copy_payload(R[1], R[0]), "source_failed"),
        (copy_payload(R[1], R[5]), "source_failed"),
        (copy_payload(R[1], R[1]), "invalid_input"),
        (copy_payload(R[1], "../../etc"), "invalid_input"),
    ):
        result = agent("release-create", payload)
        assert result.error["code"] == code, result.out
    assert sorted(p.name for p in agent.path("/var/www/site1/releases").iterdir()) == [R[0]]


def test_it_refuses_a_release_nested_too_deeply_and_leaves_nothing(
    agent: Agent, site: dict[str, Any]
) -> None:
    agent.ok("release-create", place(agent, tar_gz({"index.html": b"x"})))
    deep = agent.path(f"/var/www/site1/releases/{R[0]}")
    for _ in range(70):
        deep = deep / "d"
        deep.mkdir()
        os.chown(deep, 0, 0)  # root's: the copy, as the site user, may still read 0755 dirs
    result = agent("release-create", copy_payload(R[1], R[0]))
    assert (result.error["code"], result.error["step"]) == ("source_failed", "copy")
    assert "nested too deeply" in result.error["message"]
    assert not agent.path(f"/var/www/site1/releases/{R[1]}").exists()
