"""The gauges the BackupFailed / BackupUnverified alert rules read, exported at scrape time
through chom.metrics.SCRAPE_REGISTRY (registered when the backups app is ready)."""

from django.db.models import Max, OuterRef, Subquery
from prometheus_client.core import GaugeMetricFamily

from chom.metrics import SCRAPE_REGISTRY


def backup_gauges():
    """Per live site: did its last finished backup fail, and when was a backup last proven to
    restore (a site never verified counts from its creation, so new sites get the 8-day grace)."""
    from backups.models import Backup
    from sites.models import Site

    finished = Backup.objects.filter(
        site=OuterRef("pk"), status__in=[Backup.Status.SUCCEEDED, Backup.Status.FAILED]
    )
    sites = (
        Site.objects.exclude(status__in=[Site.Status.DELETED, Site.Status.DELETING])
        .select_related("tenant")
        .annotate(
            last_status=Subquery(finished.order_by("-created_at", "-pk").values("status")[:1]),
            last_verified=Max("backups__verified_at"),
        )
    )
    failed = GaugeMetricFamily(
        "chom_site_backup_last_failed",
        "1 when the site's last finished backup failed",
        labels=["site", "domain", "tenant"],
    )
    verified = GaugeMetricFamily(
        "chom_site_backup_last_verified_timestamp_seconds",
        "When a backup of the site was last restored and checked by a drill (unix time)",
        labels=["site", "domain", "tenant"],
    )
    for site in sites:
        labels = [site.unix_user, site.domain, site.tenant.slug]
        failed.add_metric(labels, 1 if site.last_status == Backup.Status.FAILED else 0)
        verified.add_metric(labels, (site.last_verified or site.created_at).timestamp())
    yield failed
    yield verified


class BackupCollector:
    def describe(self):
        return []  # no query at registration time (the tables may not exist yet)

    def collect(self):
        yield from backup_gauges()


SCRAPE_REGISTRY.register(BackupCollector())
