"""Backups that are proven restorable: request, run, the final backup before a delete,
retention and night schedules. Restores and restore drills are in backups/restore.py.

A backup streams `mariadb-dump | gzip` and `tar czf -` from the VPS over SSH straight into S3
multipart uploads (one part in memory at a time), reading the streams on the way to describe
what they contain (tables and row counts, every file's sha256). It is `succeeded` only after
every object was read back from S3 and matched; any failure deletes what was uploaded.
"""

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from backups import inspect, remote, storage
from backups.models import Backup
from backups.policy import policy_for
from chom.errors import ApplicationError
from chom.events import event_emit
from chom.models import Operation
from chom.operations import OperationContext, OperationError, operation_create, register
from chom.selectors import register_usage
from chom.services import audit_record
from fleet.remote.agent_client import AgentError
from fleet.remote.transport import Transport, TransportError
from fleet.services import transport_for
from sites.hooks import register_before_delete
from sites.models import Site
from sites.services import site_require_live

logger = logging.getLogger(__name__)

Log = Callable[[str], None]


class BackupFailed(OperationError):
    pass


@register_usage("backup_storage_bytes")
def _usage_backup_storage(tenant) -> int:
    return tenant_backup_bytes(tenant)


@register_usage("backup_storage_gb")
def _usage_backup_storage_gb(tenant) -> float:
    """The unit billing meters (BILLING_METERED_METRICS)."""
    return round(tenant_backup_bytes(tenant) / 10**9, 3)


def tenant_backup_bytes(tenant) -> int:
    total = Backup.objects.filter(site__tenant=tenant, status=Backup.Status.SUCCEEDED).aggregate(
        total=Sum("size_bytes")
    )["total"]
    return int(total or 0)


# --- requests ------------------------------------------------------------------------------------


def _require_storage() -> None:
    if not storage.configured():
        raise ApplicationError(503, "backups_unavailable", "Backups are not configured on this installation.")


def backup_request(
    *,
    site: Site,
    kind: str = Backup.Kind.FULL,
    trigger=Backup.Trigger.MANUAL,
    actor=None,
    now=None,
    requested_by_tenant: bool = False,
):
    """Queue a backup of SITE. Returns (backup, operation). REQUESTED_BY_TENANT (here and in the
    requests below): the tenant asked, so the operation counts against its cap of pending ones."""
    _require_storage()
    site_require_live(site=site, allow_suspended=True)
    if trigger == Backup.Trigger.MANUAL:
        quota = policy_for(site.tenant.tier).storage_quota_bytes
        if tenant_backup_bytes(site.tenant) >= quota:
            raise ApplicationError(
                403, "backup_quota_exceeded", f"Backups use the whole {quota // 1024**3} GiB of your tier."
            )
    with transaction.atomic():
        backup = Backup.objects.create(
            site=site, kind=kind, trigger=trigger, created_at=now or timezone.now()
        )
        op = operation_create(
            kind="backup.run",
            tenant=site.tenant,
            target=site,
            actor=actor,
            params={"backup_id": backup.pk},
            requested_by_tenant=requested_by_tenant,
        )
    return backup, op


def backup_restore_request(
    *, backup: Backup, target: Site, actor=None, requested_by_tenant: bool = False
) -> Operation:
    _require_storage()
    site_require_live(site=target, allow_suspended=True)
    if target.tenant_id != backup.site.tenant_id:
        raise ApplicationError(404, "not_found", "Not found.")
    if backup.status != Backup.Status.SUCCEEDED:
        raise ApplicationError(409, "backup_not_restorable", f"This backup is {backup.status}.")
    if "database" in backup.artefacts and not target.db_name:
        raise ApplicationError(409, "no_database", f"{target.domain} has no database to restore into.")
    with transaction.atomic():
        return operation_create(
            kind="backup.restore",
            tenant=target.tenant,
            target=target,
            actor=actor,
            params={"backup_id": backup.pk, "target_site_id": target.pk},
            requested_by_tenant=requested_by_tenant,
        )


def backup_verify_request(*, backup: Backup, actor=None, requested_by_tenant: bool = False) -> Operation:
    _require_storage()
    if backup.status != Backup.Status.SUCCEEDED:
        raise ApplicationError(409, "backup_not_restorable", f"This backup is {backup.status}.")
    with transaction.atomic():
        return operation_create(
            kind="backup.verify",
            tenant=backup.site.tenant,
            target=backup,
            actor=actor,
            params={"backup_id": backup.pk},
            requested_by_tenant=requested_by_tenant,
        )


def backup_download_urls(
    *, backup: Backup, artefact: str = "", actor=None, source_ip=None
) -> tuple[dict, int]:
    """Short-lived presigned URLs of BACKUP's objects (or only ARTEFACT), audited: they hand out
    the site's database and files. Returns (urls by artefact name, seconds they stay valid)."""
    if backup.status != Backup.Status.SUCCEEDED:
        raise ApplicationError(409, "backup_not_restorable", f"This backup is {backup.status}.")
    keys = {name: a.get("key", "") for name, a in backup.artefacts.items() if name != "files_index"}
    keys["manifest"] = backup.manifest_key
    keys = {name: key for name, key in keys.items() if key}  # an object never uploaded has no URL
    if artefact and artefact not in keys:
        raise ApplicationError(404, "not_found", f"This backup has no {artefact} artefact.")
    expires = settings.BACKUP_DOWNLOAD_URL_SECONDS
    try:
        urls = {
            name: storage.presigned_url(
                key, expires=expires, filename=f"{backup.site.domain}-{backup.pk}-{key.rsplit('/', 1)[-1]}"
            )
            for name, key in keys.items()
            if not artefact or name == artefact
        }
    except storage.StorageError as exc:
        raise ApplicationError(503, "storage_unavailable", str(exc))
    audit_record(
        action="backup.downloaded",
        actor=actor,
        tenant=backup.site.tenant,
        target=f"backup:{backup.pk}",
        source_ip=source_ip,
        data={"site": backup.site.domain, "artefacts": sorted(urls)},
    )
    return urls, expires


# --- running a backup ----------------------------------------------------------------------------


def _remote_failure(what: str, result) -> BackupFailed:
    return BackupFailed(f"{what} exited {result.exit_code}: {result.stderr_tail() or 'no error output'}")


def _current_release(transport: Transport, site: Site) -> str:
    result = transport.run(remote.current_release(site.unix_user), timeout=30)
    match = remote.RELEASE_TARGET_RE.fullmatch(result.stdout.strip()) if result.ok else None
    return match.group(1) if match else ""


def _stream(transport: Transport, command, key: str, inspector, *, what: str) -> storage.StoredObject:
    """COMMAND's stdout → S3 KEY, fed to INSPECTOR on the way. Fails on a non-zero exit (WHAT
    names the command in the error; "tar" tolerates exit 1)."""
    outcome = {}

    def produce(sink):
        def both(chunk: bytes) -> None:
            sink(chunk)
            inspector.feed(chunk)

        outcome["result"] = transport.stream_out(command, both, timeout=settings.BACKUP_STREAM_TIMEOUT)
        result = outcome["result"]
        # GNU tar exits 1 when a file changed while being read: the archive is still whole.
        tolerated = (0, 1) if what == "tar" else (0,)
        if result.exit_code not in tolerated:
            raise _remote_failure(what, result)

    return storage.upload_stream(key, produce)


def _verify_in_s3(stored: dict[str, dict]) -> None:
    for name, expected in stored.items():
        actual = storage.measure(expected["key"])
        if (actual.size, actual.sha256) != (expected["size"], expected["sha256"]):
            raise BackupFailed(
                f"{name} read back from S3 differs from what was sent: {actual.size} bytes sha256 "
                f"{actual.sha256[:12]}…, expected {expected['size']} bytes {expected['sha256'][:12]}…"
            )


def _mark(backup: Backup, **fields) -> None:
    Backup.objects.filter(pk=backup.pk).update(**fields)
    for name, value in fields.items():
        setattr(backup, name, value)


def _discard_objects(backup: Backup) -> None:
    """Delete whatever this backup uploaded, the manifest first: nothing may look complete."""
    if not storage.configured():
        return
    try:
        keys = [o["Key"] for o in storage.list_keys(storage.key_for(backup.prefix))]
        keys.sort(key=lambda k: not k.endswith("manifest.json"))
        for key in keys:
            storage.delete([key])
    except storage.StorageError as exc:
        logger.warning("backup %s: could not delete partial objects: %s", backup.pk, exc)


def backup_perform(*, backup: Backup, transport: Transport, log: Log = logger.info) -> Backup:
    """Run BACKUP now over TRANSPORT. Raises BackupFailed (the row then says why)."""
    site = backup.site
    _mark(backup, status=Backup.Status.RUNNING, started_at=timezone.now(), error="")
    try:
        _run(backup, site, transport, log)
    except Exception as exc:
        reason = _reason(exc)
        _discard_objects(backup)
        _mark(backup, status=Backup.Status.FAILED, error=reason, finished_at=timezone.now())
        log(f"backup {backup.pk} failed: {reason}")
        transient = isinstance(exc, storage.StorageError) and not exc.permanent
        raise BackupFailed(f"backup of {site.domain} failed: {reason}", transient=transient) from exc
    return backup


def _reason(exc: Exception) -> str:
    if isinstance(exc, TransportError | storage.StorageError | OperationError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _run(backup: Backup, site: Site, transport: Transport, log: Log) -> None:
    release = _current_release(transport, site) if backup.includes_files else site.current_release
    artefacts: dict[str, dict] = {}
    manifest: dict = {
        "format": 1,
        "chom_version": settings.CHOM_VERSION,
        "backup_id": backup.pk,
        "kind": backup.kind,
        "site": {"id": site.pk, "domain": site.domain, "type": site.type, "unix_user": site.unix_user},
        "release": release,
        "release_commit": site.releases.filter(name=release).values_list("commit", flat=True).first() or "",
        "created_at": timezone.now().isoformat(),
    }
    if backup.includes_database and site.db_name:
        log(f"streaming mariadb-dump of {site.db_name} to S3")
        counter = inspect.DumpCounter()
        key = storage.key_for(backup.prefix, "database.sql.gz")
        stored = _stream(
            transport, remote.dump_database(site.db_name), key, counter, what="mariadb-dump | gzip"
        )
        tables = counter.finish()
        artefacts["database"] = _artefact(stored)
        manifest["database"] = {"name": site.db_name, "tables": tables, "rows": sum(tables.values())}
        log(f"database: {stored.size} bytes, {len(tables)} tables, {sum(tables.values())} rows")
    if backup.includes_files:
        log(f"streaming files (shared/ and release {release or 'none'}) to S3")
        indexer = inspect.TarIndexer()
        key = storage.key_for(backup.prefix, "files.tar.gz")
        try:
            stored = _stream(
                transport, remote.archive_files(site.unix_user, release), key, indexer, what="tar"
            )
        except BaseException:
            indexer.abandon()
            raise
        files = indexer.finish()
        artefacts["files"] = _artefact(stored)
        index = storage.put_bytes(
            storage.key_for(backup.prefix, "files-index.jsonl.gz"), inspect.index_dumps(files)
        )
        artefacts["files_index"] = _artefact(index)
        manifest["files"] = {"count": len(files), "bytes": sum(size for size, _ in files.values())}
        log(f"files: {stored.size} bytes compressed, {len(files)} files")
    manifest["artefacts"] = artefacts
    log("reading every object back from S3 to verify size and sha256")
    _verify_in_s3(artefacts)
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    uploaded = storage.put_bytes(storage.key_for(backup.prefix, "manifest.json"), body)
    _verify_in_s3({"manifest": _artefact(uploaded)})
    _mark(
        backup,
        status=Backup.Status.SUCCEEDED,
        release=release,
        artefacts=artefacts,
        manifest=manifest,
        manifest_key=uploaded.key,
        manifest_sha256=uploaded.sha256,
        size_bytes=sum(a["size"] for a in artefacts.values()) + uploaded.size,
        finished_at=timezone.now(),
    )
    log(f"backup {backup.pk} verified in S3: {backup.size_bytes} bytes")


def _artefact(stored: storage.StoredObject) -> dict:
    return {"key": stored.key, "size": stored.size, "sha256": stored.sha256}


def _backup_of(ctx: OperationContext) -> Backup:
    return Backup.objects.select_related("site", "site__vps", "site__tenant").get(pk=ctx.params["backup_id"])


def _backup_op_failed(ctx: OperationContext, reason: str) -> None:
    backup = Backup.objects.filter(pk=ctx.params.get("backup_id")).first()
    if backup and backup.status in (Backup.Status.QUEUED, Backup.Status.RUNNING):
        _discard_objects(backup)
        _mark(backup, status=Backup.Status.FAILED, error=reason[:4000], finished_at=timezone.now())
        if ctx.operation.status != Operation.Status.CANCELLED:  # a person's cancel is no news to them
            site = backup.site
            message = f"The {backup.kind} backup of {site.domain} failed: {reason}"
            event_emit(event="backup.failed", tenant=site.tenant, site=site, message=message)


def _ssh(site: Site, work):
    try:
        with transport_for(site.vps) as transport:
            return work(transport)
    except TransportError as exc:
        raise OperationError(f"SSH to {site.vps.name}: {exc}", transient=exc.transient)
    except AgentError as exc:
        raise OperationError(str(exc), transient=exc.transient)


@register(
    "backup.run",
    queue="remote",
    soft_time_limit=4 * 3600,
    time_limit=4 * 3600 + 120,
    max_attempts=1,
    on_failure=_backup_op_failed,
)
def backup_run(ctx: OperationContext) -> dict:
    backup = _backup_of(ctx)
    ctx.step(f"{backup.kind} backup of {backup.site.domain}", progress=10)
    _ssh(backup.site, lambda transport: backup_perform(backup=backup, transport=transport, log=ctx.log))
    return {"backup_id": backup.pk, "size_bytes": backup.size_bytes}


@register_before_delete
def backup_before_delete(*, site: Site, ctx: OperationContext) -> None:
    """Final backup inside the site's delete operation, once the site has backups at all.
    Raises OperationError when it fails: the delete then stops with the site intact."""
    if not storage.configured() or not site.backups.exists():
        return
    backup = Backup.objects.create(site=site, kind=Backup.Kind.FULL, trigger=Backup.Trigger.PRE_DELETE)
    ctx.step("final backup before delete")
    try:
        _ssh(site, lambda transport: backup_perform(backup=backup, transport=transport, log=ctx.log))
    except OperationError as exc:
        if backup.status != Backup.Status.FAILED:
            _mark(backup, status=Backup.Status.FAILED, error=str(exc)[:4000], finished_at=timezone.now())
        raise OperationError(
            f"final backup before delete failed, the site was kept: {exc}", transient=exc.transient
        )


# --- retention -----------------------------------------------------------------------------------


def backups_prune(*, now: datetime | None = None) -> list[int]:
    """Delete (S3 objects, then rows) backups past their tier's retention or storage quota.

    The newest successful backup of a site is always kept; failed backups never count as the
    one to keep (and are removed once past retention). Queued/running backups are left alone.
    """
    now = now or timezone.now()
    pruned: list[int] = []
    site_ids = Backup.objects.values_list("site_id", flat=True).distinct()
    for site in Site.objects.filter(pk__in=site_ids).select_related("tenant"):
        policy = policy_for(site.tenant.tier)
        cutoff = now - timedelta(days=policy.retention_days)
        keeper = site.backups.filter(status=Backup.Status.SUCCEEDED).order_by("-created_at", "-id").first()
        doomed = site.backups.filter(
            created_at__lt=cutoff, status__in=[Backup.Status.SUCCEEDED, Backup.Status.FAILED]
        )
        if keeper:
            doomed = doomed.exclude(pk=keeper.pk)
        pruned += [pk for b in doomed if (pk := _delete_backup(b))]
    pruned += _prune_to_quota()
    if storage.configured():
        try:
            storage.abort_incomplete_uploads(
                prefix=storage.key_for("sites/"), older_than=now - timedelta(days=1)
            )
        except storage.StorageError as exc:
            logger.warning("could not clean incomplete uploads: %s", exc)
    return pruned


def _prune_to_quota() -> list[int]:
    pruned = []
    over = (
        Backup.objects.filter(status=Backup.Status.SUCCEEDED)
        .values_list("site__tenant", flat=True)
        .distinct()
    )
    from chom.models import Tenant

    for tenant in Tenant.objects.filter(pk__in=over):
        quota = policy_for(tenant.tier).storage_quota_bytes
        used = tenant_backup_bytes(tenant)
        if used <= quota:
            continue
        keepers = {
            b.pk
            for site in Site.objects.filter(tenant=tenant)
            if (b := site.backups.filter(status=Backup.Status.SUCCEEDED).first())
        }
        candidates = Backup.objects.filter(site__tenant=tenant, status=Backup.Status.SUCCEEDED).exclude(
            pk__in=keepers
        )
        for backup in candidates.order_by("created_at", "id"):
            if used <= quota:
                break
            if pk := _delete_backup(backup):
                used -= backup.size_bytes
                pruned.append(pk)
    return pruned


def _delete_backup(backup: Backup) -> int | None:
    """Delete BACKUP's objects (manifest first), then its row. Returns its id, None if S3 refused."""
    try:
        if storage.configured():
            keys = [o["Key"] for o in storage.list_keys(storage.key_for(backup.prefix))]
            manifest = [k for k in keys if k.endswith("manifest.json")]
            storage.delete(manifest + [k for k in keys if k not in manifest])
    except storage.StorageError as exc:
        logger.warning("retention: backup %s kept, S3 delete failed: %s", backup.pk, exc)
        return None
    pk = backup.pk
    backup.delete()
    return pk


# --- schedules -----------------------------------------------------------------------------------


def site_slot(site_id: int, day_start: datetime) -> datetime:
    """The site's daily backup time: spread over the night window by a hash of its id."""
    window = settings.BACKUP_WINDOW_HOURS * 3600
    offset = (site_id * 2654435761) % window  # Knuth's multiplicative hash: neighbours land apart
    return day_start + timedelta(hours=settings.BACKUP_WINDOW_START_HOUR, seconds=offset)


def backups_schedule_due(*, now: datetime | None = None) -> list[Backup]:
    """Queue the scheduled backups whose slot has passed, at most BACKUP_CONCURRENCY_PER_VPS
    at a time per VPS (the others wait for a later tick)."""
    if not storage.configured():
        return []
    now = now or timezone.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    busy: dict[int, int] = {}
    for vps_id in Backup.objects.filter(status__in=[Backup.Status.QUEUED, Backup.Status.RUNNING]).values_list(
        "site__vps_id", flat=True
    ):
        busy[vps_id] = busy.get(vps_id, 0) + 1
    queued = []
    for site in Site.objects.filter(status=Site.Status.ACTIVE).select_related("tenant").order_by("pk"):
        slot = site_slot(site.pk, midnight)
        if slot > now:
            slot = site_slot(site.pk, midnight - timedelta(days=1))
        frequency = policy_for(site.tenant.tier).frequency
        since = max(slot, now - frequency) if frequency < timedelta(days=1) else slot
        if site.backups.filter(trigger=Backup.Trigger.SCHEDULED, created_at__gte=since).exists():
            continue
        if busy.get(site.vps_id, 0) >= settings.BACKUP_CONCURRENCY_PER_VPS:
            continue
        backup, _ = backup_request(site=site, trigger=Backup.Trigger.SCHEDULED, now=now)
        busy[site.vps_id] = busy.get(site.vps_id, 0) + 1
        queued.append(backup)
    return queued


def backups_daily_report(*, now: datetime | None = None) -> int:
    """Email admins the last day's failed backups and drills. Returns the number of failures."""
    now = now or timezone.now()
    since = now - timedelta(days=1)
    failed = list(
        Backup.objects.filter(
            Q(status=Backup.Status.FAILED, created_at__gte=since) | ~Q(verify_error="")
        ).select_related("site")
    )
    succeeded = Backup.objects.filter(status=Backup.Status.SUCCEEDED, finished_at__gte=since).count()
    recipients = [address for _, address in settings.ADMINS]
    if not recipients:
        return len(failed)
    lines = [f"Backups in the last 24 hours: {succeeded} succeeded, {len(failed)} problems.", ""]
    for backup in failed:
        reason = backup.error if backup.status == Backup.Status.FAILED else backup.verify_error
        lines.append(
            f"- {backup.site.domain} backup {backup.pk} ({backup.trigger}, {backup.status}): {reason}"
        )
    subject = f"[CHOM] backups: {len(failed)} problems" if failed else "[CHOM] backups: all succeeded"
    send_mail(subject, "\n".join(lines) + "\n", settings.DEFAULT_FROM_EMAIL, recipients)
    return len(failed)
