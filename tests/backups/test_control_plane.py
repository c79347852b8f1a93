"""CHOM's own database to S3 and back, for real: this machine's PostgreSQL, and SQLite."""

import os
import sqlite3
import subprocess
import uuid
from datetime import timedelta

import environ
import pytest
from django.core.management import call_command
from django.utils import timezone

from backups import control_plane
from devstack.s3 import BUCKET
from tests.backups.fixtures import keys

pytestmark = pytest.mark.real  # real nginx/php-fpm/MariaDB/PostgreSQL/promtool (tests/support/real.py)

PG = os.environ.get("CONTROL_PLANE_TEST_PG", "postgres://postgres@127.0.0.1:5432/postgres")


def _psql(db: str, sql: str) -> str:
    url = environ.Env.db_url_config(PG)
    argv = ["psql", "-h", url["HOST"], "-p", str(url["PORT"]), "-U", url["USER"], "-d", db, "-tA", "-c", sql]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def _pg_available() -> bool:
    try:
        _psql("postgres", "SELECT 1")
        return True
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def scratch_pg():
    if not _pg_available():
        pytest.skip(f"no PostgreSQL at {PG}")
    names = [f"chom_cp_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        _psql("postgres", f"CREATE DATABASE {name}")
    yield names
    for name in names:
        _psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _db(name: str) -> dict:
    return environ.Env.db_url_config(PG.rsplit("/", 1)[0] + f"/{name}")


CONTENT = "SELECT md5(string_agg(id || ':' || body, ',' ORDER BY id)) || count(*) FROM notes"


def test_it_dumps_postgresql_to_s3_and_restores_it_into_another_database(s3, scratch_pg, db):
    source, target = scratch_pg
    _psql(source, "CREATE TABLE notes (id int primary key, body text)")
    _psql(source, "INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
    _psql(target, "CREATE TABLE notes (id int primary key, body text); INSERT INTO notes VALUES (1, 'stale')")
    stored = control_plane.control_plane_backup(database=_db(source))
    assert keys(s3) == [stored.key, f"{stored.key}.json"]
    assert s3.head_object(Bucket=BUCKET, Key=stored.key)["ServerSideEncryption"] == "AES256"
    call_command(
        "restore_control_plane", stored.key, "--yes", "--database-url", PG.rsplit("/", 1)[0] + f"/{target}"
    )
    assert _psql(target, CONTENT) == _psql(source, CONTENT)
    assert _psql(target, "SELECT count(*) FROM notes").strip() == "5000"


def test_it_refuses_to_restore_a_dump_that_does_not_match_its_checksum(s3, scratch_pg, db):
    source, target = scratch_pg
    _psql(source, "CREATE TABLE notes (id int primary key, body text)")
    stored = control_plane.control_plane_backup(database=_db(source))
    s3.put_object(Bucket=BUCKET, Key=stored.key, Body=b"PGDMP tampered")
    with pytest.raises(control_plane.ControlPlaneBackupError, match="does not match"):
        control_plane.control_plane_restore(key=stored.key, database=_db(target))


def test_it_backs_up_and_restores_sqlite_with_the_backup_api(s3, tmp_path, db):
    path = tmp_path / "chom.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(1000)])
    conn.close()
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
    stored = control_plane.control_plane_backup(database=database)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM t")
    conn.close()
    control_plane.control_plane_restore(key=stored.key, database=database)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*), max(v) FROM t").fetchone() == (1000, "row 999")
    conn.close()


def test_it_prunes_old_control_plane_dumps_but_keeps_the_newest(s3, tmp_path, settings, db):
    settings.CONTROL_PLANE_BACKUP_RETENTION_DAYS = 14
    path = tmp_path / "x.sqlite3"
    sqlite3.connect(path).close()
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
    old = control_plane.control_plane_backup(database=database, now=timezone.now() - timedelta(days=20))
    new = control_plane.control_plane_backup(database=database)
    # LastModified is the upload time: prune as if 15 days had passed; the newest stays regardless.
    doomed = control_plane.control_plane_prune(now=timezone.now() + timedelta(days=15))
    assert doomed == [old.key]
    assert keys(s3) == [new.key, f"{new.key}.json"]
