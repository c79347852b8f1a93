"""Gauges for the alert rules that are about CHOM's own data (certificates, stale operations,
firing alerts; the backup gauges are the backups app's, backups/metrics.py). Registered into
chom.metrics.SCRAPE_REGISTRY, read at scrape time from the database."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from chom.metrics import SCRAPE_REGISTRY


def stale_operations(now=None) -> int:
    """Running past their deadline (worker lost) or queued longer than a worker should take."""
    from chom.models import Operation

    now = now or timezone.now()
    grace = timedelta(seconds=settings.OPERATION_STALE_GRACE_SECONDS)
    lost = timedelta(seconds=settings.OPERATION_LOST_MESSAGE_SECONDS)
    running = Q(status=Operation.Status.RUNNING, deadline_at__lt=now - grace)
    queued = Q(status=Operation.Status.QUEUED, created_at__lt=now - lost)
    return Operation.objects.filter(running | queued).count()


class ObservabilityCollector:
    def describe(self):
        return []  # no query at registration time (the tables may not exist yet)

    def collect(self):
        from observability.models import Alert
        from sites.models import Site

        expiry = GaugeMetricFamily(
            "chom_site_certificate_expiry_timestamp_seconds",
            "When each live site's TLS certificate expires (unix time)",
            labels=["site", "domain", "tenant"],
        )
        live = Site.objects.exclude(status=Site.Status.DELETED).exclude(ssl_expires_at=None)
        for site in live.filter(ssl_status=Site.SslStatus.ACTIVE).select_related("tenant"):
            expiry.add_metric(
                [site.unix_user, site.domain, site.tenant.slug], site.ssl_expires_at.timestamp()
            )
        yield expiry
        yield GaugeMetricFamily(
            "chom_operations_stale", "Operations stuck running or never picked up", value=stale_operations()
        )
        firing = GaugeMetricFamily("chom_alerts_firing", "Alerts firing in CHOM", labels=["severity"])
        counts = dict(
            Alert.objects.filter(status=Alert.Status.FIRING).values_list("severity").annotate(n=Count("id"))
        )
        for severity in Alert.Severity.values:
            firing.add_metric([severity], counts.get(severity, 0))
        yield firing


SCRAPE_REGISTRY.register(ObservabilityCollector())
