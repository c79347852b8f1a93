"""`{% observability_configured as configured %}`: which integrations are switched on, so a page
renders "not configured" itself instead of fetching a JSON endpoint that can only answer 503."""

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def observability_configured() -> dict[str, bool]:
    return {"prometheus": bool(settings.PROMETHEUS_URL), "loki": bool(settings.LOKI_URL)}


@register.simple_tag
def site_uptime(site) -> dict:
    """`{% site_uptime site as uptime %}`: the site's uptime probe state and 30-day uptime, or
    `problem` saying why they cannot be shown (Prometheus down: the page still renders)."""
    from observability.clients import ServiceError
    from observability.uptime import site_uptime as read

    try:
        return read(site=site)
    except ServiceError as exc:
        return {"state": "unknown", "problem": exc.message}
