"""Where the audit log's targets link to: alerts and silences (observability's own), and the VPS,
site and backup pages of the dashboard, which the apps below render."""

from django.urls import NoReverseMatch, reverse

from chom.audit import register_audit_target
from fleet import selectors as fleet_selectors
from observability import selectors
from sites import selectors as site_selectors


def _numbers(identifiers: set[str]) -> set[int]:
    return {int(i) for i in identifiers if i.isdigit()}


@register_audit_target("alert")
def alert_urls(identifiers: set[str]) -> dict[str, str]:
    found = selectors.alerts_visible(tenant=None, staff=True).filter(pk__in=_numbers(identifiers))
    return {str(pk): reverse("observability-alert", args=[pk]) for pk in found.values_list("pk", flat=True)}


@register_audit_target("silence")
def silence_urls(identifiers: set[str]) -> dict[str, str]:
    """Alertmanager keeps expired silences a while (--data.retention): the full list shows them."""
    page = reverse("observability-silences")
    return {i: f"{page}?state=all#silence-{i}" for i in identifiers}


@register_audit_target("vps")
def vps_urls(identifiers: set[str]) -> dict[str, str]:
    found = fleet_selectors.vps_visible(staff=True).filter(name__in=identifiers).values_list("name", "pk")
    return {name: reverse("vps-detail", args=[pk]) for name, pk in found}


@register_audit_target("site")
def site_urls(identifiers: set[str]) -> dict[str, str]:
    """By domain: a live site holds its domain alone, so a deleted one's events show as text."""
    live = site_selectors.sites_visible(tenant=None, staff=True).filter(domain__in=identifiers)
    return {domain: reverse("site-detail", args=[pk]) for domain, pk in live.values_list("domain", "pk")}


@register_audit_target("backup")
def backup_urls(identifiers: set[str]) -> dict[str, str]:
    """Backups' page, by the route's name: observability never imports backups."""
    try:
        return {str(pk): reverse("backup-detail", args=[pk]) for pk in _numbers(identifiers)}
    except NoReverseMatch:  # backups is not installed
        return {}
