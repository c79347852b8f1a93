"""release-create from an uploaded archive (source type "upload"): CHOM copied it, root-only, to
/var/lib/chom/uploads; the agent verifies it, extracts it as the site user and removes it."""

from __future__ import annotations

import hashlib
import io
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
