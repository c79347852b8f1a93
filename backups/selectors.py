"""Reads of backups, scoped like sites: a tenant sees its own sites' backups, staff see all."""

from django.db.models import QuerySet

from backups.models import Backup
from chom.models import Operation


def backups_visible(*, tenant, staff: bool = False) -> QuerySet[Backup]:
    qs = Backup.objects.select_related("site", "site__tenant", "site__vps")
    if staff:
        return qs
    # Backups of a deleted site stay visible to its tenant: the pre-delete backup is the way back.
    return qs.filter(site__tenant=tenant) if tenant is not None else qs.none()


def site_backups(*, site) -> QuerySet[Backup]:
    return Backup.objects.filter(site=site)


def site_backup_operations(*, site, backups) -> QuerySet[Operation]:
    """Backup operations of SITE and verifications of BACKUPS, newest first."""
    operations = Operation.objects.filter(kind__startswith="backup.").filter(
        target_type="sites.site", target_id=str(site.pk)
    ) | Operation.objects.filter(
        kind="backup.verify", target_type="backups.backup", target_id__in=[str(b.pk) for b in backups]
    )
    return operations.order_by("-created_at")


def backup_operations(*, backup: Backup, limit: int = 20) -> list[Operation]:
    """The operations that ran on BACKUP (its run, restores from it, its drills), newest first."""
    candidates = Operation.objects.filter(kind__startswith="backup.").filter(
        target_id__in=[str(backup.pk), str(backup.site_id)]
    )
    recent = candidates.order_by("-created_at")[:200]
    return [op for op in recent if op.params.get("backup_id") == backup.pk][:limit]
