"""Backups end to end: real MariaDB and files on a test VPS, a real S3 endpoint (moto_server).
Back up through the API, break the site, restore, and prove rows and files are identical."""

import time

import pytest
import requests

from backups.models import Backup
from chom.models import Operation
from chom.operations import operation_execute
from devstack.s3 import BUCKET
from fleet.remote.commands import Command
from fleet.services import transport_for
from observability.models import Alert
from sites.models import Site
from tests.backups.fixtures import moto_s3, s3  # noqa: F401 - shared fixtures

pytestmark = pytest.mark.e2e

ROWS = 3000


def _run(op_id, expect="succeeded") -> Operation:
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    log = "\n".join(e.message for e in op.log_entries.all())
    assert op.status == expect, f"{op.error}\n{log}"
    return op


def _post(persona, url, body=None, expect="succeeded") -> tuple[dict, Operation]:
    response = persona.client().post(url, body or {}, format="json")
    assert response.status_code == 202, response.content
    return response.json(), _run(response.json()["operation"]["id"], expect)


def _sh(vps, *argv) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    assert result.ok, f"{argv}: {result.stderr}"
    return result.stdout


def _as_site(vps, site, script: str) -> str:
    """SCRIPT run by sh as the site user, with the site's home as $1."""
    return _sh(
        vps, "runuser", "-u", site.unix_user, "--", "sh", "-c", script, "sh", f"/var/www/{site.unix_user}"
    )


def _site(persona, domain) -> Site:
    body, _ = _post(persona, "/api/v1/sites", {"domain": domain, "type": "php"})
    return Site.objects.get(pk=body["id"])


def _fill(vps, site) -> None:
    _sh(
        vps,
        "mariadb",
        site.db_name,
        "-e",
        "CREATE TABLE items (id INT PRIMARY KEY, body VARCHAR(200), blob_col BLOB);"
        "INSERT INTO items SELECT seq, CONCAT('row ', seq, ' it''s (a),(b) \\\\ ', UUID()), "
        "RANDOM_BYTES(16) "
        f"FROM seq_1_to_{ROWS};"
        "CREATE TABLE tags (name VARCHAR(20)); INSERT INTO tags VALUES ('x'), ('y');",
    )
    _as_site(
        vps,
        site,
        'mkdir -p "$1/shared/uploads/deep dir" && head -c 300000 /dev/urandom > "$1/shared/uploads/photo.bin"'
        ' && echo restored-note > "$1/current/public/note.txt"'
        ' && printf x > "$1/shared/uploads/deep dir/it'
        "'"
        's.txt"',
    )


def _state(vps, site) -> dict:
    rows = _sh(
        vps,
        "sh",
        "-c",
        'mariadb -N -e "SELECT id, body, HEX(blob_col) FROM items ORDER BY id" "$1" | sha256sum',
        "sh",
        site.db_name,
    )
    count = _sh(vps, "mariadb", "-N", "-e", "SELECT COUNT(*) FROM items", site.db_name).strip()
    files = _sh(
        vps,
        "sh",
        "-c",
        'cd "$1" && find shared current/ -type f ! -name .env ! -name .chom-release.json'
        ' -printf "%P\\n" -exec sha256sum {} + | sort',
        "sh",
        f"/var/www/{site.unix_user}",
    )
    return {"rows": rows, "count": count, "files": files}


def _break(vps, site) -> None:
    _sh(vps, "mariadb", site.db_name, "-e", "DROP TABLE items; INSERT INTO tags VALUES ('z')")
    _as_site(vps, site, 'rm -rf "$1/shared/uploads" "$1/current/public/note.txt"')


def test_it_restores_rows_and_files_identical_after_breaking_the_site(alice, make_vps, s3):  # noqa: F811
    vps = make_vps("e2e-backup")
    site = _site(alice, "shop.test")
    _fill(vps, site)
    before = _state(vps, site)
    assert before["count"] == str(ROWS) and "photo.bin" in before["files"]

    started = time.monotonic()
    body, _ = _post(alice, f"/api/v1/sites/{site.pk}/backups")
    backup_seconds = time.monotonic() - started
    backup = Backup.objects.get(pk=body["id"])
    assert backup.status == "succeeded" and backup.manifest["database"]["tables"] == {
        "items": ROWS,
        "tags": 2,
    }
    assert backup.manifest["files"]["count"] >= 3

    _break(vps, site)
    assert "items" not in _sh(vps, "mariadb", "-N", "-e", "SHOW TABLES", site.db_name)
    started = time.monotonic()
    _, op = _post(alice, f"/api/v1/backups/{backup.pk}/restore")
    restore_seconds = time.monotonic() - started
    assert _state(vps, site) == before
    site.refresh_from_db()
    release = op.result["release"]
    assert site.current_release == release and site.status == "active"
    home = f"/var/www/{site.unix_user}"
    assert _sh(vps, "readlink", f"{home}/current").strip() == f"releases/{release}"
    assert _sh(vps, "stat", "-c", "%U:%G %a", f"{home}/releases/{release}", f"{home}/shared").split("\n")[
        :2
    ] == [f"{site.unix_user}:www-data 2750", f"{site.unix_user}:www-data 2750"]
    assert _sh(vps, "stat", "-c", "%U", f"{home}/shared/uploads/photo.bin").strip() == site.unix_user
    served = requests.get(f"http://{vps.ip_address}/note.txt", headers={"Host": "shop.test"}, timeout=5)
    assert served.text == "restored-note\n"
    # A pre-restore backup was taken first; scratch databases and staging are gone.
    assert site.backups.filter(trigger="pre-restore", status="succeeded").count() == 1
    databases = _sh(vps, "mariadb", "-N", "-e", "SHOW DATABASES")
    assert f"{site.db_name}_restore" not in databases and f"{site.db_name}_previous" not in databases
    assert ".restore-" not in _sh(vps, "ls", "-a", f"{home}/releases")
    size = backup.size_bytes
    print(
        f"\nbackup {size} bytes in {backup_seconds:.2f}s, "
        f"restore (incl. pre-restore backup) {restore_seconds:.2f}s"
    )

    # Restore drill: proven restorable, scratch cleaned up.
    _post(alice, f"/api/v1/backups/{backup.pk}/verify")
    backup.refresh_from_db()
    assert backup.verified_at is not None and backup.verify_error == ""
    assert "chom_drill" not in _sh(vps, "mariadb", "-N", "-e", "SHOW DATABASES")
    assert "chom-drill" not in _sh(vps, "ls", "-a", f"{home}/tmp")

    # The drill catches a tampered object in S3 and alerts.
    s3.put_object(Bucket=BUCKET, Key=backup.artefacts["database"]["key"], Body=b"\x1f\x8bgarbage")
    _post(alice, f"/api/v1/backups/{backup.pk}/verify", expect="failed")
    backup.refresh_from_db()
    assert "database" in backup.verify_error and "checksum" in backup.verify_error
    alert = Alert.objects.get(name="backup_drill_failed", status="firing")
    assert alert.tenant == alice.tenant and "shop.test" in alert.summary
    # And a restore from it refuses to touch anything.
    _post(alice, f"/api/v1/backups/{backup.pk}/restore", expect="failed")
    assert _state(vps, site) == before


def test_it_restores_into_another_site_of_the_same_tenant(alice, make_vps, s3):  # noqa: F811
    vps = make_vps("e2e-backup2")
    source, copy = _site(alice, "source.test"), _site(alice, "copy.test")
    _fill(vps, source)
    before = _state(vps, source)
    body, _ = _post(alice, f"/api/v1/sites/{source.pk}/backups")
    _post(alice, f"/api/v1/backups/{body['id']}/restore", {"target_site": copy.pk})
    after = _state(vps, copy)
    assert after == before
    env = _sh(vps, "cat", f"/var/www/{copy.unix_user}/current/.env")
    assert f"DB_DATABASE={copy.db_name}" in env and source.db_name + "\n" not in env
    assert _state(vps, source) == before  # the source is untouched
    served = requests.get(f"http://{vps.ip_address}/note.txt", headers={"Host": "copy.test"}, timeout=5)
    assert served.text == "restored-note\n"


# --- every database shape a site can have ----------------------------------------------------------

SHAPES = {
    "empty database": "",
    "tables only": "CREATE TABLE items (id INT PRIMARY KEY, body VARCHAR(50));"
    "INSERT INTO items SELECT seq, CONCAT('row ', seq) FROM seq_1_to_500;",
    "tables, a view and a trigger": "CREATE TABLE items (id INT PRIMARY KEY, body VARCHAR(50));"
    "CREATE TABLE audit (n INT AUTO_INCREMENT PRIMARY KEY, item INT);"
    "CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW INSERT INTO audit (item) VALUES (NEW.id);"
    "CREATE VIEW long_items AS SELECT id, body FROM items WHERE id > 250;"
    "CREATE PROCEDURE item_count() SELECT COUNT(*) FROM items;"
    "INSERT INTO items SELECT seq, CONCAT('row ', seq) FROM seq_1_to_500;",
}


def _schema(vps, site) -> str:
    """Every table with its row count, every view, trigger and routine: the database's shape."""
    query = (
        "SELECT 'table', table_name, '' FROM information_schema.tables"
        " WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
        " UNION ALL SELECT 'view', table_name, '' FROM information_schema.views"
        " WHERE table_schema = DATABASE()"
        " UNION ALL SELECT 'trigger', trigger_name, event_object_table FROM information_schema.triggers"
        " WHERE trigger_schema = DATABASE()"
        " UNION ALL SELECT 'routine', routine_name, '' FROM information_schema.routines"
        " WHERE routine_schema = DATABASE() ORDER BY 1, 2"
    )
    shape = _sh(vps, "mariadb", "-N", "-e", query, site.db_name)
    for table in ("items", "audit"):
        if f"table\t{table}" in shape:
            shape += table + _sh(vps, "mariadb", "-N", "-e", f"SELECT COUNT(*) FROM {table}", site.db_name)
    return shape


def _source_commit(backup) -> str:
    """A restored release carries the commit of the release the backup archived, or the archive's
    checksum when that release had none (a placeholder page)."""
    source = backup.site.releases.get(name=backup.release).commit
    return source or f"sha256:{backup.artefacts['files']['sha256']}"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_it_backs_up_restores_and_drills_every_database_shape(shape, alice, make_vps, s3):  # noqa: F811
    vps = make_vps("e2e-shape")
    site, other = _site(alice, "shape.test"), _site(alice, "other.test")
    if SHAPES[shape]:
        _sh(vps, "mariadb", site.db_name, "-e", SHAPES[shape])
    before = _schema(vps, site)
    body, _ = _post(alice, f"/api/v1/sites/{site.pk}/backups")
    backup = Backup.objects.get(pk=body["id"])

    # Everything the site's users could do to it after the backup.
    _sh(
        vps,
        "mariadb",
        site.db_name,
        "-e",
        "CREATE TABLE added_later (id INT);"
        + (
            "DROP VIEW long_items; DROP TRIGGER items_audit; DELETE FROM items WHERE id < 100;"
            if "view" in shape
            else ""
        )
        + ("DELETE FROM items WHERE id < 100;" if shape == "tables only" else ""),
    )
    _, op = _post(alice, f"/api/v1/backups/{backup.pk}/restore")
    assert _schema(vps, site) == before, "\n".join(e.message for e in op.log_entries.all())
    site.refresh_from_db()
    assert (site.status, site.status_reason) == ("active", "")
    release = site.releases.get(name=op.result["release"])
    assert (
        release.status == "active" and release.commit == site.releases.get(name=backup.release).commit != ""
    )
    if "trigger" in shape:  # the restored trigger works
        _sh(vps, "mariadb", site.db_name, "-e", "INSERT INTO items VALUES (9999, 'new')")
        assert (
            _sh(
                vps, "mariadb", "-N", "-e", "SELECT item FROM audit ORDER BY n DESC LIMIT 1", site.db_name
            ).strip()
            == "9999"
        )

    # The same backup restored into another site, and proven by a drill.
    _post(alice, f"/api/v1/backups/{backup.pk}/restore", {"target_site": other.pk})
    assert _schema(vps, other) == before
    _post(alice, f"/api/v1/backups/{backup.pk}/verify")
    backup.refresh_from_db()
    assert backup.verified_at is not None and backup.verify_error == ""
    databases = _sh(vps, "mariadb", "-N", "-e", "SHOW DATABASES")
    assert "_restore" not in databases and "_previous" not in databases and "chom_drill" not in databases


def test_it_backs_up_restores_and_drills_files_only(alice, make_vps, s3):  # noqa: F811
    vps = make_vps("e2e-files")
    site = _site(alice, "files.test")
    _as_site(vps, site, 'echo kept > "$1/current/public/kept.txt"')
    _sh(
        vps,
        "mariadb",
        site.db_name,
        "-e",
        "CREATE TABLE untouched (id INT); INSERT INTO untouched VALUES (1)",
    )
    body, _ = _post(alice, f"/api/v1/sites/{site.pk}/backups", {"kind": "files"})
    backup = Backup.objects.get(pk=body["id"])
    assert "database" not in backup.artefacts and "files" in backup.artefacts

    _as_site(vps, site, 'rm "$1/current/public/kept.txt"')
    _sh(vps, "mariadb", site.db_name, "-e", "INSERT INTO untouched VALUES (2)")
    Site.objects.filter(pk=site.pk).update(status_reason="an earlier failure")
    _, op = _post(alice, f"/api/v1/backups/{backup.pk}/restore")
    served = requests.get(f"http://{vps.ip_address}/kept.txt", headers={"Host": "files.test"}, timeout=5)
    assert served.text == "kept\n"
    # A files backup leaves the database alone.
    assert _sh(vps, "mariadb", "-N", "-e", "SELECT COUNT(*) FROM untouched", site.db_name).strip() == "2"
    site.refresh_from_db()
    assert site.status_reason == ""
    assert (
        site.releases.get(name=op.result["release"]).commit == site.releases.get(name=backup.release).commit
    )
    _post(alice, f"/api/v1/backups/{backup.pk}/verify")
    backup.refresh_from_db()
    assert backup.verified_at is not None and backup.verify_error == ""
