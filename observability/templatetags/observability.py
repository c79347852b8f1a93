"""`{% observability_configured as configured %}`: which integrations are switched on, so a page
renders "not configured" itself instead of fetching a JSON endpoint that can only answer 503."""

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def observability_configured() -> dict[str, bool]:
    return {"prometheus": bool(settings.PROMETHEUS_URL), "loki": bool(settings.LOKI_URL)}
