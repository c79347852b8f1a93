"""Reads of backups, scoped like sites: a tenant sees its own sites' backups, staff see all."""

from django.db.models import QuerySet

from backups.models import Backup
from sites.selectors import sites_visible


def backups_visible(*, tenant, staff: bool = False) -> QuerySet[Backup]:
    qs = Backup.objects.select_related("site", "site__tenant", "site__vps")
    if staff:
        return qs
    # Backups of a deleted site stay visible to its tenant: the pre-delete backup is the way back.
    return qs.filter(site__tenant=tenant) if tenant is not None else qs.none()


def site_backups(*, site) -> QuerySet[Backup]:
    return Backup.objects.filter(site=site)


def restore_targets(*, tenant, staff: bool = False):
    return sites_visible(tenant=tenant, staff=staff)
