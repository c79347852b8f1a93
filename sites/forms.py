"""Dashboard forms of sites. A form only collects input: what is allowed is decided by the API's
serializers (the same rules for both doors) and by the services."""

from django import forms

from chom.forms import drf_messages
from chom.models import Tenant
from sites.api.serializers import SiteCreateSerializer
from sites.models import DnsAccount, Site


class DnsAccountChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: DnsAccount) -> str:
        return f"{obj.tenant.slug}: {obj.name} ({obj.provider})"


class SiteCreateForm(forms.Form):
    # The API's create is tenant-token only; here staff choose the tenant the site belongs to.
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.order_by("slug"))
    domain = forms.CharField(
        max_length=300,
        help_text="A host name, or a wildcard such as *.example.com (tiers with wildcard domains).",
    )
    type = forms.ChoiceField(choices=Site.Type.choices)
    php_version = forms.CharField(
        max_length=5, required=False, label="PHP version", help_text="Blank: the server's newest."
    )
    aliases = forms.CharField(max_length=6000, required=False, help_text="Separated by spaces or commas.")
    repository_url = forms.CharField(max_length=500, required=False, label="Repository URL")
    repository_branch = forms.CharField(max_length=100, required=False, initial="main", label="Branch")
    dns_account = DnsAccountChoiceField(
        queryset=DnsAccount.objects.select_related("tenant").order_by("tenant__slug", "name"),
        required=False,
        label="DNS account",
        empty_label="None: the certificate is issued over HTTP-01",
        help_text="One of the tenant's DNS accounts holding the zone: the certificate is then issued "
        "over DNS-01 (a wildcard domain needs one).",
    )

    # Where the serializer reports an error → the field of this form that shows it (None: the form).
    FIELD_OF = {"repository": "repository_url", "non_field_errors": None}

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        body = {
            "domain": data["domain"],
            "type": data["type"],
            "aliases": data["aliases"].replace(",", " ").split(),
        }
        if data["php_version"]:
            body["php_version"] = data["php_version"]
        if data["dns_account"]:  # another tenant's account is refused by the service, as in the API
            body["dns_account"] = data["dns_account"].pk
        if data["repository_url"]:
            body["repository"] = {
                "url": data["repository_url"],
                "branch": data["repository_branch"] or "main",
            }
        serializer = SiteCreateSerializer(data=body)
        if not serializer.is_valid():
            for field, detail in serializer.errors.items():
                if field == "repository" and isinstance(detail, dict):  # {"url": [...], "branch": [...]}
                    for part, messages in detail.items():
                        self.add_error(f"repository_{part}", drf_messages(messages))
                else:
                    self.add_error(self.FIELD_OF.get(field, field), drf_messages(detail))
            return data
        self.site_fields = dict(serializer.validated_data)
        return data


class RollbackForm(forms.Form):
    release = forms.CharField(max_length=40, required=False, help_text="Blank: the release before.")


class SuspendForm(forms.Form):
    reason = forms.CharField(max_length=90, help_text="Shown on the site's page and in the audit log.")


class UnsuspendForm(forms.Form):
    reason = forms.CharField(max_length=90, required=False)


def admin_reason(text: str) -> str:
    """A staff suspension's recorded reason: always `admin…`, so it can never be taken for the
    reason another part of the platform suspends with (billing unsuspends only its own)."""
    return f"admin: {text}" if text else "admin"


class SiteDeleteForm(forms.Form):
    confirm = forms.CharField(
        max_length=300,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args, site: Site, **kwargs):
        super().__init__(*args, **kwargs)
        self.site = site
        self.fields["confirm"].label = f"Type {site.domain} to confirm"

    def clean_confirm(self) -> str:
        typed = self.cleaned_data["confirm"].strip()
        if typed != self.site.domain:
            raise forms.ValidationError(
                f"You typed “{typed}”, not “{self.site.domain}”: nothing was deleted."
            )
        return typed
