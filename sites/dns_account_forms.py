"""Dashboard forms of DNS accounts (staff): the API's serializer checks the input, the service
(sites/dns_accounts.py) checks the token with the provider and stores it."""

from django import forms

from chom.models import Tenant
from sites.api.dns_accounts import DnsAccountCreateSerializer
from sites.dns import DNS_PROVIDERS
from sites.runtime_forms import ApiCheckedForm


class DnsAccountForm(ApiCheckedForm):
    serializer = DnsAccountCreateSerializer

    tenant = forms.ModelChoiceField(queryset=Tenant.objects.order_by("slug"), to_field_name="slug")
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    provider = forms.ChoiceField(choices=[(p, p) for p in sorted(DNS_PROVIDERS)])
    token = forms.CharField(
        max_length=500,
        strip=False,
        help_text="An API token that may edit the zone's DNS records. Checked with the provider, "
        "stored encrypted, never shown again.",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
    )

    def body(self, data: dict) -> dict:
        return {"name": data["name"], "provider": data["provider"], "token": data["token"]}


class DnsAccountFilterForm(forms.Form):
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.order_by("slug"),
        to_field_name="slug",
        required=False,
        empty_label="Every tenant",
    )
