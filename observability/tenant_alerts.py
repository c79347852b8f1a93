"""What a tenant hears through their notification channels when an alert about one of their sites
starts or stops firing (called by services._fire / _resolve, inside the transition's transaction,
so each transition is told once however often Alertmanager re-sends it).

- `SiteDown` (the uptime probe) and the server-down alerts (`VpsDown`, CHOM's `vps_unreachable`:
  every serving site of that VPS) say `site.down` / `site.up`, once per outage of a site: the
  first alert saying a site is down tells, the others that join it (VpsDown, then SiteDown two
  minutes later; one SiteDown per probed URL) do not; `site.up` comes when the last one resolves.
- `CertificateExpiringSoon` and `BackupFailed` say `certificate.expiring` / `backup.failed`, unless
  CHOM already told this tenant the same about the same site in the last day (the daily renewal
  sweep and a failed backup operation emit those themselves, with more detail); their resolution
  is `alert.resolved`.
- Nothing else goes to tenants' channels: fleet alerts (ExporterDown, MariaDBDown, DiskAlmostFull,
  ChomDown, ...) are for staff. The site is the one CHOM's row names (`services._owner_of`): a
  `tenant` label never sends an alert about a site to anyone but that site's tenant.
Site-down messages are written here from CHOM's rows, never copied from a server alert's summary,
which names addresses and errors of a machine other tenants share; the certificate and backup
events carry the summary of the site's own rule (deploy/observability/alert-rules.yml)."""

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from chom.events import event_emit
from observability.models import Alert, ChannelDelivery
from sites import selectors as site_selectors

# Alerts saying a server stopped answering (CHOM's own health check: several missed SSH checks in a
# row; Prometheus: its node exporter missed scrapes): every site that should serve from it is down.
SERVER_DOWN_ALERTS = ("vps_unreachable", "VpsDown")
SITE_DOWN_ALERT = "SiteDown"
# alert name -> (event when it fires, event when it resolves), for alerts about one site.
SITE_ALERT_EVENTS = {
    "CertificateExpiringSoon": ("certificate.expiring", "alert.resolved"),
    "BackupFailed": ("backup.failed", "alert.resolved"),
}
# An alert restating what CHOM emitted itself within this span is not sent again.
RESTATED_WITHIN = timedelta(days=1)


def alert_told(alert: Alert, *, firing: bool) -> None:
    """Tell the tenants concerned that ALERT started (FIRING) or stopped firing."""
    if alert.name in SERVER_DOWN_ALERTS:
        vps_name = alert.labels.get("vps")
        sites = site_selectors.sites_serving_on_vps(vps_name=vps_name) if vps_name else []
        for site in sites:
            _site_down_changed(alert, site, firing=firing, why="its server does not answer")
    elif alert.site is None:
        return
    elif alert.name == SITE_DOWN_ALERT:
        if _serving(alert.site):
            _site_down_changed(alert, alert.site, firing=firing, why="it does not answer CHOM's uptime probe")
    elif alert.name in SITE_ALERT_EVENTS and not alert.site.is_going_away:
        _site_alert_changed(alert, firing=firing)


def _serving(site) -> bool:
    return site_selectors.sites_serving_on_vps(vps_name=site.vps.name).filter(pk=site.pk).exists()


def _down_alerts(site):
    """The firing alerts that say SITE is down."""
    return Alert.objects.filter(status=Alert.Status.FIRING).filter(
        Q(name=SITE_DOWN_ALERT, site=site) | Q(name__in=SERVER_DOWN_ALERTS, labels__vps=site.vps.name)
    )


def _site_down_changed(alert: Alert, site, *, firing: bool, why: str) -> None:
    others = _down_alerts(site).exclude(pk=alert.pk).exists()
    if others:  # the tenant heard already (firing), or the site is still down (resolved)
        return
    if firing:
        event_emit(event="site.down", tenant=site.tenant, site=site, message=f"{site.domain} is down: {why}.")
    else:
        event_emit(event="site.up", tenant=site.tenant, site=site, message=f"{site.domain} answers again.")


def _site_alert_changed(alert: Alert, *, firing: bool) -> None:
    site = alert.site
    fired, resolved = SITE_ALERT_EVENTS[alert.name]
    if not firing:
        event_emit(event=resolved, tenant=site.tenant, site=site, message=f"Resolved: {alert.summary}")
        return
    told = ChannelDelivery.objects.filter(
        channel__tenant=site.tenant,
        event=fired,
        site=site.domain,
        is_test=False,
        created_at__gte=timezone.now() - RESTATED_WITHIN,
    )
    if not told.exists():
        event_emit(event=fired, tenant=site.tenant, site=site, message=alert.summary)
