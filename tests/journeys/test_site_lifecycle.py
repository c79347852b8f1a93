"""Journey 1, through the front door: staff creates a VPS, a tenant puts a PHP site with a database
on it from a git repository, visitors write to it, the site gets a certificate from the ACME CA,
is backed up to S3, loses a row and a file, and is restored from the backup with both back.

Every step is an HTTP request to the session's CHOM stack (tests/journeys/conftest.py) and the
operations it answers with are polled over HTTP; the data is written by the site's own PHP code
(visitors' POSTs) and checked, destroyed and checked again with a root shell on the VPS."""

import hashlib
import json
import secrets
import time

import boto3
import pytest
import requests

from tests.journeys.support import https_get, php_app_files, php_app_state, site_get, unique, vps_shell
from tests.support.git import git_repo

pytestmark = pytest.mark.timeout(1500)  # the first journey of a session also waits for the stack


def test_it_takes_a_php_site_from_a_new_vps_through_tls_backup_and_restore(stack, git_server, tmp_path):
    steps: dict[str, float] = {}
    clock = time.monotonic()

    def step(name: str) -> None:
        nonlocal clock
        steps[name], clock = time.monotonic() - clock, time.monotonic()

    vps = stack.create_vps(unique("j-life"))
    assert vps["provider"] == "local" and vps["php_versions"], vps
    step("vps created and bootstrapped")

    repo = tmp_path / "app"
    git_repo(repo, php_app_files(version="1"), "the journeys' PHP app")
    owner = stack.tenant("life")
    domain = f"{unique('shop')}.test"
    repository = {"url": git_server.publish(repo, "life.git"), "branch": "main"}
    created, _ = owner.act(
        "/api/v1/sites", {"domain": domain, "type": "php", "repository": repository, "tls": "manual"}
    )
    site_id, user = created["id"], f"site{created['id']}"
    site = owner.get(f"/api/v1/sites/{site_id}")
    assert site["status"] == "active" and site["current_release"], site
    ip = site["vps"]["ip_address"]
    vps = stack.staff().get(f"/api/v1/vps/{site['vps']['id']}")  # the VPS CHOM placed the site on
    step("PHP site deployed from git")

    page = site_get(ip, domain)
    assert page.status_code == 200 and page.headers.get("X-Chom-Site") == user, (
        page.headers,
        page.text[:500],
    )
    assert page.json() == {"app": "journeys", "version": "1", "rows": [], "files": []}
    bodies = [f"note {n} {secrets.token_hex(8)}" for n in range(3)]
    for body in bodies:
        written = requests.post(
            f"http://{ip}/note.php", headers={"Host": domain}, data={"body": body}, timeout=10
        )
        assert written.status_code == 200 and written.headers.get("X-Chom-Site") == user, written.text[:500]
    before = php_app_state(stack, vps, site_id)
    assert before["count"] == 3 and before["files"].count("note-") == 3, before
    served_before = site_get(ip, domain).json()
    assert [row[1] for row in served_before["rows"]] == bodies
    assert served_before["files"]["note-2.txt"] == hashlib.sha256(bodies[1].encode()).hexdigest()
    step("served, visitors wrote rows and files")

    owner.act(f"/api/v1/sites/{site_id}/ssl")
    assert owner.get(f"/api/v1/sites/{site_id}")["ssl"]["status"] == "active"
    root = stack.pebble.issuing_root()
    status, headers, body = https_get(ip, domain, root)
    assert status == 200 and headers.get("X-Chom-Site") == user, (status, headers, body[:500])
    step("certificate issued, HTTPS verified against the CA")

    accepted, _ = owner.act(f"/api/v1/sites/{site_id}/backups")
    backup = owner.get(f"/api/v1/backups/{accepted['id']}")
    assert backup["status"] == "succeeded" and {"database", "files"} <= set(backup["artefacts"]), backup
    stored = _bucket_objects(stack.env)
    for name, artefact in backup["artefacts"].items():
        assert artefact["sha256"] in stored.values(), f"artefact {name} is not in the bucket: {stored}"
    step("backed up to S3")

    uploads = f"/var/www/{user}/shared/uploads"
    vps_shell(
        stack, vps, 'mariadb -e "DELETE FROM notes WHERE id = 2" "$1" && rm "$2/note-2.txt"', user, uploads
    )
    broken = php_app_state(stack, vps, site_id)
    assert broken["count"] == 2 and "note-2.txt" not in broken["files"] and broken["rows"] != before["rows"]
    step("a row and a file destroyed on the server")

    owner.act(f"/api/v1/backups/{backup['id']}/restore")
    after = php_app_state(stack, vps, site_id)
    assert after == before, f"restored data differs:\nbefore {before}\nafter  {after}"
    status, headers, body = https_get(ip, domain, root)
    assert status == 200 and headers.get("X-Chom-Site") == user, (status, headers, body[:500])
    assert json.loads(body) == served_before
    assert owner.get(f"/api/v1/sites/{site_id}")["status"] == "active"
    step("restored: rows and files identical, served over HTTPS")

    total = sum(steps.values())
    print(f"\njourney site lifecycle: {total:.1f}s")
    for name, seconds in steps.items():
        print(f"  {seconds:6.1f}s  {name}")


def _bucket_objects(env: dict[str, str]) -> dict[str, str]:
    """Every object of the stack's S3 bucket: key -> sha256 of its content."""
    s3 = boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        region_name=env["S3_REGION"],
        aws_access_key_id=env["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
    )
    objects = s3.list_objects_v2(Bucket=env["S3_BUCKET"]).get("Contents", [])
    return {
        o["Key"]: hashlib.sha256(
            s3.get_object(Bucket=env["S3_BUCKET"], Key=o["Key"])["Body"].read()
        ).hexdigest()
        for o in objects
    }
