"""Sites in Django's admin, to inspect only: changes are operations (dashboard, API). The
database password and app secrets are never shown."""

from django.contrib import admin

from chom.admin import ReadOnlyAdmin
from sites.models import (
    BasicAuthUser,
    CronJob,
    DnsAccount,
    Redirect,
    Release,
    ResponseHeader,
    Site,
    SiteHostname,
    SiteVariable,
    SiteWebhook,
    WebhookDelivery,
    Worker,
)

SECRETS = {"db_password", "app_key", "deploy_key_private"}


class ReleaseInline(admin.TabularInline):
    model = Release
    fields = ["name", "commit", "status", "created_at", "activated_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Site)
class SiteAdmin(ReadOnlyAdmin):
    list_display = ["domain", "tenant", "vps", "type", "status", "ssl_status", "current_release"]
    list_filter = ["type", "status", "ssl_status"]
    search_fields = ["domain", "unix_user", "tenant__slug"]
    fields = [f.name for f in Site._meta.fields if f.name not in SECRETS]
    readonly_fields = fields
    inlines = [ReleaseInline]


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ["site", "name", "status", "created_at", "activated_at"]
    list_filter = ["status"]
    search_fields = ["site__domain", "name", "commit"]


@admin.register(SiteHostname)
class SiteHostnameAdmin(ReadOnlyAdmin):
    list_display = ["hostname", "site"]
    search_fields = ["hostname"]


@admin.register(SiteWebhook)
class SiteWebhookAdmin(ReadOnlyAdmin):
    list_display = ["site", "created_at", "rotated_at"]
    fields = [
        f.name for f in SiteWebhook._meta.fields if f.name not in {"secret", "hook_id"}
    ]  # never the secret
    readonly_fields = fields


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["__str__"]


@admin.register(SiteVariable)
class SiteVariableAdmin(ReadOnlyAdmin):
    list_display = ["site", "name", "updated_at"]
    search_fields = ["site__domain", "name"]
    fields = ["site", "name", "updated_at"]  # never the value
    readonly_fields = fields


@admin.register(DnsAccount)
class DnsAccountAdmin(ReadOnlyAdmin):
    list_display = ["name", "tenant", "provider", "created_at"]
    fields = ["tenant", "name", "provider", "created_at"]  # never the token
    readonly_fields = fields


@admin.register(CronJob)
class CronJobAdmin(ReadOnlyAdmin):
    list_display = ["site", "schedule", "enabled", "last_run_at", "last_exit_code"]


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    list_display = ["site", "name", "processes", "restart", "enabled"]


@admin.register(Redirect)
class RedirectAdmin(ReadOnlyAdmin):
    list_display = ["site", "source", "match", "destination", "status_code"]


@admin.register(ResponseHeader)
class ResponseHeaderAdmin(ReadOnlyAdmin):
    list_display = ["site", "name"]


@admin.register(BasicAuthUser)
class BasicAuthUserAdmin(ReadOnlyAdmin):
    list_display = ["site", "path_prefix", "username"]
    fields = ["site", "path_prefix", "username", "created_at"]  # never the hash
    readonly_fields = fields
