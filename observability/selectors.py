"""Reads of alerts, always scoped: a tenant sees only its own alerts, staff see all."""

from django.db.models import QuerySet

from observability.models import Alert


def alerts_visible(*, tenant, staff: bool = False) -> QuerySet[Alert]:
    qs = Alert.objects.select_related("tenant", "site")
    if staff:
        return qs
    return qs.filter(tenant=tenant) if tenant is not None else qs.none()
