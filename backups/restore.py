"""Restores and restore drills (the requests for them are in backups/services.py).

Restore, database: the dump is imported into `<db>_restore`; then one `RENAME TABLE` statement
moves the live tables to `<db>_previous` and the restored ones into `<db>` (atomic for readers).
Views, triggers, routines and events cannot be renamed across databases: when the backup or the
live database has any, the live database is emptied and the dump (already proven to import
cleanly into `<db>_restore`) is imported into it — not atomic, see `_restore_database`.
Restore, files: the archive is extracted as the site user into a staging directory, its release
becomes `releases/<new>` and `shared/` is swapped in, then the agent's `release-activate`
switches `current`. Every step has an undo; any failure undoes what was done, so the site keeps
serving what it had.

A drill restores a backup into a scratch database and directory on its VPS and compares what it
got with the manifest and the files index: only a drilled backup counts as verified.
"""

import hashlib
import io
import json
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone

from backups import inspect, remote, storage
from backups.models import Backup
from backups.services import (
    BackupFailed,
    Log,
    _backup_of,
    _current_release,
    _mark,
    _reason,
    _remote_failure,
    _ssh,
    backup_perform,
    backup_verify_request,
)
from chom.alerts import alert_raise, alert_resolve
from chom.models import Operation
from chom.operations import OperationContext, OperationError, register
from fleet.remote.agent_client import Agent
from fleet.remote.transport import Transport, TransportError
from sites.environment import env_apply_payload
from sites.models import Site
from sites.services import new_release_name, site_failure_cleared, site_release_switched, site_verify
from sites.types import site_type
from sites.workers import workers_sync

# --- reading back from S3 ------------------------------------------------------------------------


class HashingReader(io.RawIOBase):
    """A file-like view of an S3 object that hashes what it hands out (bounded memory)."""

    def __init__(self, key: str):
        self._chunks = storage.iter_object(key)
        self._pending = b""
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._pending:
            self._pending = next(self._chunks, b"")
            self.sha256.update(self._pending)
            self.size += len(self._pending)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _stream_in(transport: Transport, command, artefact: dict, what: str) -> None:
    reader = HashingReader(artefact["key"])
    result = transport.stream_in(command, io.BufferedReader(reader), timeout=settings.BACKUP_STREAM_TIMEOUT)
    if not result.ok:
        raise _remote_failure(what, result)
    if (reader.size, reader.sha256.hexdigest()) != (artefact["size"], artefact["sha256"]):
        raise BackupFailed(f"{artefact['key']} changed in S3 while being read: {what} discarded")


def backup_check_integrity(backup: Backup) -> list[str]:
    """Problems with BACKUP's objects in S3 (read back and hashed), [] when all match."""
    problems = []
    expected = {
        **backup.artefacts,
        "manifest": {"key": backup.manifest_key, "sha256": backup.manifest_sha256},
    }
    for name, artefact in expected.items():
        try:
            actual = storage.measure(artefact["key"])
        except storage.StorageError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if actual.sha256 != artefact["sha256"] or actual.size != artefact.get("size", actual.size):
            problems.append(
                f"{name} ({artefact['key']}) does not match its checksum: sha256 {actual.sha256[:12]}…, "
                f"expected {artefact['sha256'][:12]}…"
            )
    return problems


def _lines(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line]


def _sql(transport: Transport, command, what: str) -> list[str]:
    result = transport.run(command, timeout=settings.BACKUP_STREAM_TIMEOUT)
    if not result.ok:
        raise _remote_failure(what, result)
    return _lines(result)


# --- restore -------------------------------------------------------------------------------------


class Undo:
    """Steps to take back, newest first, when a later step fails."""

    def __init__(self, log: Log):
        self.log = log
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, step: Callable[[], None]) -> None:
        self.steps.append((what, step))

    def run(self) -> None:
        for what, step in reversed(self.steps):
            try:
                step()
                self.log(f"undone: {what}")
            except Exception as exc:  # noqa: BLE001 - undo as much as possible
                self.log(f"could not undo {what}: {_reason(exc)}")


def _restore_database(
    transport, backup: Backup, target: Site, undo: Undo, log: Log, *, safety: Backup
) -> Callable[[], None]:
    """Import into <db>_restore, then swap it in. Returns the cleanup to run after success.

    Tables only (or none): one RENAME TABLE moves the live tables out and the restored ones in,
    atomically; with zero tables on both sides there is nothing to move. Views, triggers, routines
    or events on either side: these cannot move between databases, so the live database is
    emptied and the dump (already proven to import cleanly into the scratch database) is imported
    into it. That path is NOT atomic: from the empty database until the import ends (seconds for a
    small site) the site sees missing or partly loaded tables. If the import fails, the database
    is emptied again and the pre-restore backup SAFETY is imported back.
    """
    live, incoming, parking = target.db_name, f"{target.db_name}_restore", f"{target.db_name}_previous"
    log(f"importing the dump into scratch database {incoming}")
    _sql(transport, remote.recreate_database(incoming), "create scratch database")
    undo.push(f"drop {incoming}", lambda: _sql(transport, remote.drop_database(incoming), "drop"))
    _stream_in(
        transport, remote.import_database(incoming), backup.artefacts["database"], "import of the dump"
    )
    new_tables = _sql(transport, remote.list_tables(incoming), "list restored tables")
    expected = backup.manifest.get("database", {}).get("tables", {})
    if sorted(expected) != sorted(new_tables):
        raise BackupFailed(f"the imported dump has tables {new_tables}, the manifest says {sorted(expected)}")
    live_tables = _sql(transport, remote.list_tables(live), "list live tables")
    programmable = sum(int(n) for n in _sql(transport, remote.count_programmable(incoming), "inspect"))
    programmable += sum(int(n) for n in _sql(transport, remote.count_programmable(live), "inspect"))
    if programmable:
        _restore_database_in_place(transport, backup, live, undo, log, safety=safety)
    elif not (live_tables or new_tables):
        log(f"the backup and {live} both have no tables: nothing to swap")
    else:
        _sql(transport, remote.recreate_database(parking), "create parking database")
        log(f"swapping {len(new_tables)} restored tables into {live} (one RENAME TABLE)")
        _sql(
            transport,
            remote.sql(remote.swap_tables(live, incoming, parking, live_tables, new_tables)),
            "swap",
        )
        back = remote.swap_tables(live, parking, incoming, new_tables, live_tables)
        undo.push(f"tables of {live}", lambda: _sql(transport, remote.sql(back), "swap back"))

    def cleanup() -> None:
        for db in (incoming, parking):
            _sql(transport, remote.drop_database(db), f"drop {db}")

    return cleanup


def _restore_database_in_place(transport, backup: Backup, live: str, undo: Undo, log: Log, *, safety) -> None:
    """Views/triggers/routines/events: empty LIVE and import the dump into it (not atomic)."""
    log(
        f"{live} or the backup has views, triggers, routines or events, which cannot move between "
        f"databases: emptying {live} and importing the dump into it (not atomic: the site sees a "
        "partly loaded database until the import ends)"
    )

    def back_to_safety() -> None:
        _sql(transport, remote.recreate_database(live), f"empty {live}")
        if "database" in safety.artefacts:
            _stream_in(transport, remote.import_database(live), safety.artefacts["database"], "re-import")

    undo.push(f"{live} from pre-restore backup {safety.pk}", back_to_safety)
    _sql(transport, remote.recreate_database(live), f"empty {live}")
    _stream_in(transport, remote.import_database(live), backup.artefacts["database"], "import into live db")


def _restore_files(transport, backup: Backup, target: Site, release: str, undo: Undo, log: Log) -> Callable:
    """Extract into staging, build releases/RELEASE and swap shared/ in. Returns the cleanup."""
    user = target.unix_user
    staging = f"{remote.home(user)}/releases/.restore-{release}"
    log(f"extracting the files archive as {user} into {staging}")
    _run_ok(transport, remote.remove_tree(user, staging), "clear staging")
    undo.push(f"remove {staging}", lambda: _run_ok(transport, remote.remove_tree(user, staging), "cleanup"))
    _stream_in(transport, remote.extract_files(user, staging), backup.artefacts["files"], "tar extract")
    archived = backup.release
    if archived:
        _run_ok(transport, remote.stage_release(user, staging, archived, release), "stage release")
    else:
        _run_ok(transport, remote.new_release_dir(user, release), "create release directory")
        _run_ok(
            transport,
            remote.as_site(user, 'ln -s . "$1/public"', f"{remote.home(user)}/releases/{release}"),
            "",
        )
    release_dir = f"{remote.home(user)}/releases/{release}"
    undo.push(
        f"remove {release_dir}", lambda: _run_ok(transport, remote.remove_tree(user, release_dir), "rm")
    )
    env = site_type(target.type).env_file(target)
    if env:
        # The release belongs to TARGET now: its own database credentials, not the source's.
        _write(transport, user, f"{release_dir}/{env['path']}", env["content"].encode(), own_group=True)
    marker = {"release": release, "commit": restored_commit(backup), "created": timezone.now().isoformat()}
    _write(transport, user, f"{release_dir}/.chom-release.json", json.dumps(marker).encode() + b"\n")
    parked = f"{staging}/shared.previous"
    _run_ok(transport, remote.swap_shared(user, f"{staging}/shared", parked), "swap shared/")
    undo.push(
        "shared/", lambda: _run_ok(transport, remote.swap_shared(user, parked, f"{staging}/shared"), "")
    )
    return lambda: _run_ok(transport, remote.remove_tree(user, staging), "remove staging")


def _run_ok(transport: Transport, command, what: str) -> None:
    result = transport.run(command, timeout=settings.BACKUP_STREAM_TIMEOUT)
    if not result.ok:
        raise _remote_failure(what or command.argv[0], result)


def _write(transport: Transport, user: str, path: str, data: bytes, *, own_group: bool = False) -> None:
    result = transport.run(remote.write_file(user, path, own_group=own_group), stdin=data, timeout=60)
    if not result.ok:
        raise _remote_failure(f"write {path}", result)


def restore_perform(*, backup: Backup, target: Site, transport: Transport, log: Log, step=None) -> dict:
    """Restore BACKUP into TARGET over TRANSPORT; on failure everything done is undone."""

    step = step or (lambda name, progress=None: log(f"step: {name}"))
    step("verify the backup's checksums in S3", progress=5)
    problems = backup_check_integrity(backup)
    if problems:
        raise BackupFailed(f"backup {backup.pk} is damaged, nothing was changed: {'; '.join(problems)}")
    step(f"pre-restore backup of {target.domain}", progress=15)
    safety = Backup.objects.create(site=target, kind=Backup.Kind.FULL, trigger=Backup.Trigger.PRE_RESTORE)
    try:
        backup_perform(backup=safety, transport=transport, log=log)
    except BackupFailed as exc:
        raise BackupFailed(f"pre-restore backup failed, nothing was changed: {exc}")
    release = new_release_name()
    previous = _current_release(transport, target)
    undo, cleanups = Undo(log), []
    try:
        if "files" in backup.artefacts:
            step("files into a new release", progress=35)
            cleanups.append(_restore_files(transport, backup, target, release, undo, log))
        if "database" in backup.artefacts:
            step("database", progress=60)
            cleanups.append(_restore_database(transport, backup, target, undo, log, safety=safety))
        if "files" in backup.artefacts:
            step(f"switch current to {release}", progress=80)
            agent = Agent(transport)
            payload = {"name": target.unix_user, "release": release, "keep": settings.SITE_RELEASES_KEPT}
            activated = agent.call("release-activate", payload)
            env = env_apply_payload(target)
            if env is not None:
                # TARGET's own environment (shared/.env came with the archive: maybe another
                # site's database credentials), linked from the restored release.
                agent.call("env-apply", env)
            # The site's workers run the restored release's code from now on.
            workers_sync(agent.call, target, restart=True)
            if previous:
                back = {**payload, "release": previous}
                undo.push(f"current -> {previous}", lambda: agent.call("release-activate", back))
            step("verify the site answers", progress=90)
            site_verify(site=target, log=log)
    except Exception as exc:
        log(f"restore failed: {_reason(exc)}; undoing")
        undo.run()
        if isinstance(exc, OperationError):
            raise
        raise BackupFailed(f"restore failed and was undone: {_reason(exc)}") from exc
    if "files" not in backup.artefacts:
        site_failure_cleared(site=target)
    for cleanup in cleanups:
        try:
            cleanup()
        except Exception as exc:  # noqa: BLE001 - the restore itself succeeded
            log(f"cleanup: {_reason(exc)}")
    if "files" in backup.artefacts:
        site_release_switched(
            site=target,
            release=release,
            pruned=activated.data.get("pruned", []),
            commit=restored_commit(backup),
        )
    return {
        "backup_id": backup.pk,
        "pre_restore_backup_id": safety.pk,
        "release": release if "files" in backup.artefacts else "",
    }


def restored_commit(backup: Backup) -> str:
    """What a release restored from BACKUP records as its commit: the commit of the release the
    backup archived, or else the files archive's checksum."""
    commit = backup.manifest.get("release_commit") or ""
    if not commit and backup.release:
        commit = (
            backup.site.releases.filter(name=backup.release).values_list("commit", flat=True).first() or ""
        )
    return commit or f"sha256:{backup.artefacts['files']['sha256']}"


@register(
    "backup.restore", queue="remote", soft_time_limit=4 * 3600, time_limit=4 * 3600 + 120, max_attempts=1
)
def backup_restore_run(ctx: OperationContext) -> dict:
    backup = _backup_of(ctx)
    target = Site.objects.select_related("vps", "tenant").get(pk=ctx.params["target_site_id"])
    return _ssh(
        target,
        lambda transport: restore_perform(
            backup=backup, target=target, transport=transport, log=ctx.log, step=ctx.step
        ),
    )


# --- restore drills ------------------------------------------------------------------------------


def drill_perform(*, backup: Backup, transport: Transport, log: Log) -> list[str]:
    """Restore BACKUP into a scratch database and directory on its VPS and compare with the
    manifest. Returns the problems found ([] = proven restorable). Always cleans up."""
    problems = backup_check_integrity(backup)
    if problems:
        return problems
    site = backup.site
    scratch_db = f"chom_drill_{backup.pk}"
    scratch_dir = f"{remote.home(site.unix_user)}/tmp/chom-drill-{backup.pk}"
    try:
        if "database" in backup.artefacts:
            problems += _drill_database(transport, backup, scratch_db, log)
        if "files" in backup.artefacts:
            problems += _drill_files(transport, backup, scratch_dir, log)
    finally:
        for command in (remote.drop_database(scratch_db), remote.remove_tree(site.unix_user, scratch_dir)):
            try:
                transport.run(command, timeout=600)
            except TransportError as exc:
                log(f"drill cleanup: {exc}")
    return problems


def _drill_database(transport, backup: Backup, scratch: str, log: Log) -> list[str]:
    log(f"importing the dump into {scratch}")
    _sql(transport, remote.recreate_database(scratch), "create scratch database")
    _stream_in(transport, remote.import_database(scratch), backup.artefacts["database"], "import of the dump")
    expected = backup.manifest.get("database", {}).get("tables", {})
    tables = _sql(transport, remote.list_tables(scratch), "list tables")
    if sorted(tables) != sorted(expected):
        return [f"database: tables {tables} after import, manifest says {sorted(expected)}"]
    counts = {}
    if tables:
        for line in _sql(transport, remote.count_rows(scratch, tables), "count rows"):
            index, count = line.split("\t")
            counts[tables[int(index)]] = int(count)
    wrong = [f"{t}: {counts.get(t)} rows, manifest {n}" for t, n in expected.items() if counts.get(t) != n]
    log(
        f"database: {len(tables)} tables, {sum(counts.values())} rows"
        + (f", mismatches {wrong}" if wrong else "")
    )
    return [f"database row counts differ: {'; '.join(wrong[:5])}"] if wrong else []


def _drill_files(transport, backup: Backup, scratch: str, log: Log) -> list[str]:
    user = backup.site.unix_user
    log(f"extracting the files archive into {scratch}")
    _run_ok(transport, remote.remove_tree(user, scratch), "clear scratch")
    _stream_in(transport, remote.extract_files(user, scratch), backup.artefacts["files"], "tar extract")
    index = inspect.index_loads(storage.get_bytes(backup.artefacts["files_index"]["key"]))
    listing = bytearray()
    result = transport.stream_out(remote.hash_tree(user, scratch), listing.extend, timeout=3600)
    if not result.ok:
        raise _remote_failure("sha256sum of the extracted files", result)
    found = inspect.parse_sha256sum(listing.decode("utf-8", "replace"))
    missing = sorted(set(index) - set(found))
    different = sorted(p for p in set(index) & set(found) if index[p] != found[p])
    extra = sorted(set(found) - set(index))
    count = backup.manifest.get("files", {}).get("count")
    log(f"files: {len(found)} extracted, {len(index)} in the index, manifest count {count}")
    problems = []
    if count != len(index):
        problems.append(f"files index lists {len(index)} files, the manifest says {count}")
    for label, paths in (("missing", missing), ("different", different), ("unexpected", extra)):
        if paths:
            problems.append(f"{len(paths)} files {label} after extraction (e.g. {', '.join(paths[:3])})")
    return problems


def _record_drill(backup: Backup, problems: list[str]) -> None:
    site = backup.site
    key = f"site:{site.pk}"
    if problems:
        summary = f"restore drill of backup {backup.pk} of {site.domain} failed: {'; '.join(problems)}"
        _mark(backup, verify_error=summary[:4000])
        alert_raise(
            name="backup_drill_failed",
            key=key,
            summary=summary[:2000],
            severity="critical",
            tenant=site.tenant,
            labels={"site": site.domain, "backup": str(backup.pk)},
        )
    else:
        _mark(backup, verified_at=timezone.now(), verify_error="")
        alert_resolve(name="backup_drill_failed", key=key)


def _verify_failed(ctx: OperationContext, reason: str) -> None:
    backup = (
        Backup.objects.select_related("site", "site__tenant").filter(pk=ctx.params.get("backup_id")).first()
    )
    if backup and not backup.verify_error:
        _record_drill(backup, [reason])


@register(
    "backup.verify",
    queue="remote",
    soft_time_limit=4 * 3600,
    time_limit=4 * 3600 + 120,
    on_failure=_verify_failed,
)
def backup_verify_run(ctx: OperationContext) -> dict:
    backup = _backup_of(ctx)
    ctx.step(f"restore drill of backup {backup.pk} ({backup.site.domain})", progress=10)
    problems = _ssh(
        backup.site, lambda transport: drill_perform(backup=backup, transport=transport, log=ctx.log)
    )
    _record_drill(backup, problems)
    if problems:
        raise OperationError("restore drill failed: " + "; ".join(problems))
    return {"backup_id": backup.pk, "verified_at": backup.verified_at.isoformat()}


def backups_drill_all(*, now=None) -> list[Operation]:
    """Weekly: a restore drill of the latest successful backup of every live site."""
    ops = []
    for site in Site.objects.exclude(status__in=[Site.Status.DELETING, Site.Status.DELETED]):
        latest = site.backups.filter(status=Backup.Status.SUCCEEDED).first()
        if latest is not None:
            ops.append(backup_verify_request(backup=latest))
    return ops
