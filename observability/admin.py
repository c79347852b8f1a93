"""Alerts, their notifications and the VPSes' log-shipping credentials in Django's admin, to
inspect only: acknowledge and silence from the dashboard (audited); secrets are never shown."""

from django.contrib import admin

from chom.admin import ReadOnlyAdmin
from observability.models import (
    Alert,
    ChannelDelivery,
    LogShippingCredential,
    Notification,
    NotificationChannel,
)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["name", "severity", "status", "source", "tenant", "site", "started_at", "resolved_at"]
    list_filter = ["status", "severity", "source"]
    search_fields = ["name", "summary", "fingerprint"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["alert", "event", "channel", "recipient", "status", "attempts", "sent_at"]
    list_filter = ["status", "channel", "event"]


@admin.register(LogShippingCredential)
class LogShippingCredentialAdmin(ReadOnlyAdmin):
    list_display = ["vps", "created_at"]
    fields = ["vps", "created_at"]  # never the secret
    readonly_fields = fields


@admin.register(NotificationChannel)
class NotificationChannelAdmin(ReadOnlyAdmin):
    list_display = ["name", "tenant", "kind", "created_at"]
    list_filter = ["kind"]
    fields = ["tenant", "name", "kind", "events", "created_at"]  # never the address/URL or secret
    readonly_fields = fields


@admin.register(ChannelDelivery)
class ChannelDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["channel", "status", "attempts", "created_at"]
    list_filter = ["status"]
