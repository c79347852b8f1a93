"""CHOM's own database to S3 every 6 hours, and back (`manage.py restore_control_plane KEY`).

PostgreSQL: `pg_dump --format=custom` streamed from its stdout into a multipart upload, and
`pg_restore --clean --if-exists --single-transaction` fed from S3 (no local copy either way).
SQLite: the sqlite3 online backup API copies the live file into a temporary file first (the only
way to get a consistent snapshot while web/worker/beat write), which is then streamed up; a
restore downloads next to the database file, checks it, and renames it into place.

Each dump has a JSON sidecar (`<key>.json`: engine, size, sha256, CHOM version); a restore
refuses an object whose bytes do not match it.
"""

import hashlib
import json
import os
import sqlite3
import subprocess
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.utils import timezone

from backups import storage

PREFIX = "control-plane/"
CHUNK = 1024 * 1024


class ControlPlaneBackupError(Exception):
    pass


def _engine(database: dict) -> str:
    engine = database["ENGINE"]
    if "postgresql" in engine:
        return "postgresql"
    if "sqlite3" in engine:
        return "sqlite"
    raise ControlPlaneBackupError(f"no control plane backup for {engine}")


def _pg_env(database: dict) -> dict[str, str]:
    env = {**os.environ, "PGDATABASE": database["NAME"], "PGCONNECT_TIMEOUT": "10"}
    for name, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER"), ("PGPASSWORD", "PASSWORD")):
        if database.get(key):
            env[name] = str(database[key])
    return env


def _pipe_into(proc: subprocess.Popen, sink) -> None:
    while chunk := proc.stdout.read(CHUNK):
        sink(chunk)


def control_plane_backup(
    *, database: dict | None = None, now: datetime | None = None
) -> storage.StoredObject:
    database = database or settings.DATABASES["default"]
    engine = _engine(database)
    now = now or timezone.now()
    key = storage.key_for(PREFIX, f"{now:%Y%m%dT%H%M%SZ}-{engine}.dump")
    if engine == "postgresql":
        stored = _backup_postgresql(database, key)
    else:
        stored = _backup_sqlite(database, key)
    actual = storage.measure(key)
    if (actual.size, actual.sha256) != (stored.size, stored.sha256):
        storage.delete([key])
        raise ControlPlaneBackupError(f"{key} read back from S3 does not match what was sent")
    sidecar = {
        "engine": engine,
        "size": stored.size,
        "sha256": stored.sha256,
        "chom_version": settings.CHOM_VERSION,
        "created_at": now.isoformat(),
    }
    storage.put_bytes(f"{key}.json", json.dumps(sidecar, indent=2).encode(), content_type="application/json")
    return stored


def _backup_postgresql(database: dict, key: str) -> storage.StoredObject:
    argv = ["pg_dump", "--format=custom", "--no-owner", "--no-privileges"]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, env=_pg_env(database))

        def produce(sink) -> None:
            _pipe_into(proc, sink)
            if proc.wait(timeout=60) != 0:
                errors.seek(0)
                raise ControlPlaneBackupError(
                    f"pg_dump exited {proc.returncode}: {errors.read()[-500:].decode()}"
                )

        try:
            return storage.upload_stream(key, produce)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _backup_sqlite(database: dict, key: str) -> storage.StoredObject:
    folder = Path(settings.VAR_DIR) / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".sqlite3") as copy:
        source = sqlite3.connect(database["NAME"])
        target = sqlite3.connect(copy.name)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()

        def produce(sink) -> None:
            with open(copy.name, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    sink(chunk)

        return storage.upload_stream(key, produce)


def control_plane_backups() -> list[dict]:
    """Dumps in S3, newest first: [{"key", "size", "created"}]."""
    found = [o for o in storage.list_keys(storage.key_for(PREFIX)) if o["Key"].endswith(".dump")]
    return sorted(
        ({"key": o["Key"], "size": o["Size"], "created": o["LastModified"]} for o in found),
        key=lambda o: o["key"],
        reverse=True,
    )


def control_plane_prune(*, now: datetime | None = None) -> list[str]:
    """Delete dumps older than CONTROL_PLANE_BACKUP_RETENTION_DAYS; the newest always stays."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.CONTROL_PLANE_BACKUP_RETENTION_DAYS)
    doomed = [d["key"] for d in control_plane_backups()[1:] if d["created"] < cutoff]
    if doomed:
        storage.delete([f"{k}.json" for k in doomed] + doomed)
    return doomed


def _sidecar(key: str) -> dict:
    try:
        return json.loads(storage.get_bytes(f"{key}.json"))
    except (storage.StorageError, ValueError) as exc:
        raise ControlPlaneBackupError(f"{key} has no readable sidecar ({key}.json): {exc}")


def control_plane_restore(*, key: str, database: dict | None = None) -> dict:
    """Bring DATABASE (default: CHOM's own) back to the dump KEY. Verifies the checksum first."""
    database = database or settings.DATABASES["default"]
    engine = _engine(database)
    sidecar = _sidecar(key)
    if sidecar["engine"] != engine:
        raise ControlPlaneBackupError(f"{key} is a {sidecar['engine']} dump; this database is {engine}")
    actual = storage.measure(key)
    if (actual.size, actual.sha256) != (sidecar["size"], sidecar["sha256"]):
        raise ControlPlaneBackupError(f"{key} does not match its recorded sha256: refusing to restore it")
    if engine == "postgresql":
        _restore_postgresql(key, database, sidecar["sha256"])
    else:
        _restore_sqlite(key, database, sidecar["sha256"])
    return sidecar


def _restore_postgresql(key: str, database: dict, sha256: str) -> None:
    argv = ["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges", "--exit-on-error",
            "--single-transaction", "--dbname", database["NAME"]]  # fmt: skip
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
                                env=_pg_env(database))  # fmt: skip
        try:
            for chunk in storage.iter_object(key):
                digest.update(chunk)
                proc.stdin.write(chunk)
            proc.stdin.close()
            code = proc.wait(timeout=3600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        if code != 0:
            errors.seek(0)
            raise ControlPlaneBackupError(f"pg_restore exited {code}: {errors.read()[-800:].decode()}")
    if digest.hexdigest() != sha256:
        raise ControlPlaneBackupError(
            f"{key} changed while being restored (single transaction: check the data)"
        )


def _restore_sqlite(key: str, database: dict, sha256: str) -> None:
    path = Path(database["NAME"])
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".restoring", delete=False) as handle:
        try:
            for chunk in storage.iter_object(key):
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            os.unlink(handle.name)
            raise
    if digest.hexdigest() != sha256:
        os.unlink(handle.name)
        raise ControlPlaneBackupError(f"{key} changed while being downloaded: nothing restored")
    connections.close_all()
    os.replace(handle.name, path)
