"""The Django admin for the fleet: cloud accounts are saved through the same service as the
dashboard (the token is checked against the provider, stored encrypted, never shown again);
VPSes and the fleet key are read-only here (their changes are operations)."""

from django import forms
from django.contrib import admin

from chom.errors import ApplicationError
from fleet import services
from fleet.models import FleetKey, MariaDBMonitorAccount, ProviderCredential, Vps
from fleet.providers import PROVIDERS

CLOUDS = sorted(name for name, cls in PROVIDERS.items() if cls.distro_images)


class ProviderCredentialForm(forms.ModelForm):
    provider = forms.ChoiceField(choices=[(name, name) for name in CLOUDS])
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: leave empty to keep the stored token. Checked against the provider on save.",
    )

    class Meta:
        model = ProviderCredential
        fields = [
            "provider",
            "token",
            "base_url",
            "default_region",
            "default_size",
            "default_image",
            "is_default",
        ]

    def validate_unique(self):
        """The service saved the account in clean(): one per provider, updated in place."""

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            self.saved = services.provider_credential_save(
                provider=data["provider"],
                token=data.get("token") or "",
                base_url=data.get("base_url") or "",
                default_region=data.get("default_region") or "",
                default_size=data.get("default_size") or "",
                default_image=data.get("default_image") or "",
                is_default=bool(data.get("is_default")),
                actor=getattr(self, "actor", None),
            )
        except ApplicationError as exc:
            for field, messages in (exc.fields or {"__all__": [exc.message]}).items():
                self.add_error(
                    field if field in self.fields else None, f"{exc.message} ({'; '.join(messages)})"
                )
        return data


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = ProviderCredentialForm
    list_display = ["provider", "default_region", "default_size", "default_image", "is_default"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.actor = request.user
        return form

    def save_model(self, request, obj, form, change):
        """Already saved (validated, encrypted, audited) by the service in the form's clean()."""
        obj.pk = form.saved.pk

    def delete_model(self, request, obj):
        services.provider_credential_delete(credential=obj, actor=request.user)


@admin.register(Vps)
class VpsAdmin(admin.ModelAdmin):
    list_display = ["name", "provider", "ip_address", "kind", "status", "max_sites", "tenant"]
    list_filter = ["provider", "kind", "status"]
    search_fields = ["name", "ip_address", "provider_id"]

    def has_add_permission(self, request):
        return False  # a VPS is created by an operation (dashboard Fleet page or POST /api/v1/vps)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(FleetKey)
class FleetKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    fields = ["name", "public_key", "created_at"]  # never the private key
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MariaDBMonitorAccount)
class MariaDBMonitorAccountAdmin(FleetKeyAdmin):
    list_display = ["vps", "created_at"]
    fields = ["vps", "created_at"]  # never the password
    readonly_fields = fields
