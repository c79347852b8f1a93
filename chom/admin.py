"""The core's rows in Django's admin, to inspect only: every change goes through the services (which
audit it) in the dashboard, the API or a management command. Token hashes are never shown."""

from django.contrib import admin

from chom.models import (
    ApiToken,
    AuditEvent,
    Membership,
    Operation,
    OperationLogEntry,
    Tenant,
    WorkerHeartbeat,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ["user", "role"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(ReadOnlyAdmin):
    list_display = ["slug", "name", "tier", "status", "suspension_reason", "created_at"]
    list_filter = ["tier", "status"]
    search_fields = ["slug", "name", "memberships__user__email"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "tenant", "role"]
    list_filter = ["role"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__email", "user__username", "tenant__slug"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "prefix",
        "user",
        "tenant",
        "scope",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user", "tenant"]
    search_fields = ["prefix", "name", "user__email", "tenant__slug"]
    # The hash is never shown: exclude it, not merely make it read-only.
    fields = [
        "name",
        "prefix",
        "user",
        "tenant",
        "scope",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "actor_label", "tenant", "target", "source_ip"]
    list_filter = ["action"]
    list_select_related = ["tenant"]
    search_fields = ["action", "actor_label", "target", "tenant__slug"]
    date_hierarchy = "created_at"


class OperationLogInline(admin.TabularInline):
    model = OperationLogEntry
    fields = ["created_at", "level", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "tenant", "target_type", "target_id", "status", "attempts", "created_at"]
    list_filter = ["status", "kind"]
    list_select_related = ["tenant"]
    search_fields = ["id", "kind", "target_id", "tenant__slug", "error"]
    date_hierarchy = "created_at"
    inlines = [OperationLogInline]


@admin.register(OperationLogEntry)
class OperationLogEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "operation", "level", "message"]
    list_filter = ["level"]
    list_select_related = ["operation"]
    search_fields = ["message", "operation__id"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["hostname", "queues", "last_seen"]
