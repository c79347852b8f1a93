"""Backups in Django's admin, to inspect only: run, restore, verify and download from the
dashboard or the API (downloads are audited there)."""

from django.contrib import admin

from backups.models import Backup


@admin.register(Backup)
class BackupAdmin(admin.ModelAdmin):
    list_display = ["id", "site", "kind", "trigger", "status", "created_at", "finished_at", "verified_at"]
    list_filter = ["kind", "status", "trigger"]
    search_fields = ["site__domain", "manifest_key"]
    readonly_fields = [f.name for f in Backup._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
