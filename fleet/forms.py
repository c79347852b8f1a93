"""Dashboard forms of the fleet. A form collects input and checks it with the API's own serializers
(the same rules for both doors); the services decide and refuse. Two forms show a refusal on
themselves rather than on the page they came from, because the operator would otherwise retype
everything: a cloud account the provider refuses, and a server whose host key cannot be read."""

from django import forms
from django.conf import settings
from django.core import signing

from chom.errors import ApplicationError
from chom.forms import drf_messages
from chom.models import Tenant
from fleet import selectors, services
from fleet.api.serializers import VpsCreateSerializer, VpsUpdateSerializer
from fleet.models import ProviderCredential, Vps
from fleet.remote.transport import HostKeyScanError, host_key_fingerprint, host_key_scan

ADOPT_SALT = "fleet.vps-adopt"
ADOPT_MAX_AGE = 15 * 60  # seconds between reading the host key and confirming it


class _VpsFields(forms.Form):
    """What every new VPS needs; checked by the API's VpsCreateSerializer in `clean`."""

    name = forms.CharField(max_length=63, help_text="Lowercase letters, digits and dashes.")
    kind = forms.ChoiceField(
        choices=Vps.Kind.choices, initial=Vps.Kind.SHARED, help_text="Dedicated: one tenant's own server."
    )
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.order_by("slug"),
        required=False,
        to_field_name="slug",
        help_text="Only for a dedicated VPS.",
    )
    max_sites = forms.IntegerField(min_value=1, max_value=10000, initial=50, label="Max sites")

    provider_name = ""

    def body(self, data: dict) -> dict:
        body = {"name": data["name"], "provider": self.provider_name, "kind": data["kind"]}
        body["max_sites"] = data["max_sites"]
        if data.get("tenant"):
            body["tenant"] = data["tenant"].slug
        return body

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        if selectors.vps_name_taken(data["name"]):
            self.add_error("name", f"A VPS named {data['name']!r} already exists.")
            return data
        serializer = VpsCreateSerializer(data=self.body(data))
        if not serializer.is_valid():
            for name, detail in serializer.errors.items():
                self.add_error(name if name in self.fields else None, drf_messages(detail))
            return data
        self.body_checked = self.body(data)
        self.vps_fields = dict(serializer.validated_data)
        return data


class VpsCreateForm(_VpsFields):
    """A new server at a cloud the installation has an account for (or the local test fleet)."""

    provider = forms.ChoiceField(choices=[])
    region = forms.CharField(
        max_length=50, required=False, help_text="Empty: the cloud account's default, else the cloud's."
    )
    size = forms.CharField(
        max_length=50, required=False, help_text="Empty: the cloud account's default, else the cloud's."
    )
    image = forms.CharField(
        max_length=100,
        required=False,
        help_text="Empty: the cloud account's default image, else the cloud's Debian 12.",
    )
    field_order = ["name", "provider", "region", "size", "image", "kind", "tenant", "max_sites"]

    def __init__(self, *args, catalogues: dict[str, selectors.CloudCatalogue], **kwargs):
        super().__init__(*args, **kwargs)
        self.catalogues = catalogues
        providers = list(catalogues) + (["local"] if settings.CHOM_LOCAL_PROVIDER else [])
        self.fields["provider"].choices = [(name, name) for name in providers]
        self.fields["region"].widget.attrs["list"] = "region-choices"
        self.fields["size"].widget.attrs["list"] = "size-choices"
        self.fields["image"].widget.attrs["list"] = "image-choices"

    def body(self, data: dict) -> dict:
        self.provider_name = data["provider"]
        chosen = {name: data[name] for name in ("region", "size", "image") if data[name]}  # empty: defaults
        return super().body(data) | chosen

    def clean(self) -> dict:
        data = super().clean()
        catalogue = self.catalogues.get(data.get("provider", ""))
        for kind, name in (("regions", "region"), ("sizes", "size"), ("images", "image")):
            slug = data.get(name)
            if catalogue and slug and not catalogue.offers(kind, slug):
                self.add_error(name, f"{catalogue.provider} does not offer the {name} {slug!r}.")
        return data


class VpsAdoptForm(_VpsFields):
    """A server the operator already has: its address; CHOM reads its host key without logging in."""

    ip_address = forms.GenericIPAddressField(label="IP address")
    ssh_port = forms.IntegerField(min_value=1, max_value=65535, initial=22, label="SSH port")
    field_order = ["name", "ip_address", "ssh_port", "kind", "tenant", "max_sites"]
    provider_name = "manual"

    def body(self, data: dict) -> dict:
        return super().body(data) | {"ip_address": data["ip_address"], "ssh_port": data["ssh_port"]}

    def scan(self) -> str:
        """The server's host key, signed with what was entered (for the confirmation step); or ""
        with the reason on the form."""
        data = self.cleaned_data
        try:
            host_key = host_key_scan(
                data["ip_address"], data["ssh_port"], timeout=settings.FLEET_SSH_CONNECT_TIMEOUT
            )
        except HostKeyScanError as exc:
            self.add_error("ip_address", f"CHOM could not read the server's host key: {exc}")
            return ""
        self.host_key = host_key
        return signing.dumps(self.body_checked | {"host_key": host_key}, salt=ADOPT_SALT)


class VpsAdoptConfirmForm(forms.Form):
    confirmation = forms.CharField(widget=forms.HiddenInput)

    def clean_confirmation(self) -> dict:
        try:
            body = signing.loads(self.cleaned_data["confirmation"], salt=ADOPT_SALT, max_age=ADOPT_MAX_AGE)
        except signing.BadSignature:
            raise forms.ValidationError(
                "This confirmation is not valid or has expired: enter the server again to read its key."
            )
        host_key = body.pop("host_key")
        serializer = VpsCreateSerializer(data=body)
        if not serializer.is_valid():
            raise forms.ValidationError(" ".join(drf_messages(serializer.errors)))
        return dict(serializer.validated_data) | {"host_key": host_key}


def adopt_confirmation_context(confirmation: str) -> dict:
    """What the confirmation page shows: the entered server and its key's fingerprint."""
    body = signing.loads(confirmation, salt=ADOPT_SALT, max_age=ADOPT_MAX_AGE)
    key_type = body["host_key"].split()[0]
    public_file = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(key_type, "ecdsa")
    return {
        "server": body,
        "key_type": key_type,
        "fingerprint": host_key_fingerprint(body["host_key"]),
        "check_command": f"ssh-keygen -lf /etc/ssh/ssh_host_{public_file}_key.pub",
    }


class CapacityForm(forms.Form):
    max_sites = forms.IntegerField(label="Max sites")

    def clean(self) -> dict:
        data = super().clean()
        if not self.errors:
            serializer = VpsUpdateSerializer(data={"max_sites": data["max_sites"]})
            if not serializer.is_valid():
                self.add_error("max_sites", drf_messages(serializer.errors))
        return data


class CordonForm(forms.Form):
    cordoned = forms.TypedChoiceField(
        choices=[("true", "cordon"), ("false", "uncordon")], coerce=lambda value: value == "true"
    )


class VpsDeleteForm(forms.Form):
    confirm = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autocomplete": "off"}))

    def __init__(self, *args, vps: Vps, **kwargs):
        super().__init__(*args, **kwargs)
        self.vps = vps
        self.fields["confirm"].label = f"Type {vps.name} to confirm"

    def clean_confirm(self) -> str:
        typed = self.cleaned_data["confirm"].strip()
        if typed != self.vps.name:
            raise forms.ValidationError(f"You typed “{typed}”, not “{self.vps.name}”: nothing was destroyed.")
        return typed


class CloudAccountForm(forms.Form):
    token = forms.CharField(
        label="API token",
        required=False,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only, stored encrypted; checked against the cloud when saved.",
    )
    base_url = forms.URLField(
        label="API address",
        required=False,
        assume_scheme="https",
        help_text="Empty: the cloud's public API.",
    )
    default_region = forms.CharField(max_length=50, required=False)
    default_size = forms.CharField(max_length=50, required=False)
    default_image = forms.CharField(max_length=100, required=False)
    is_default = forms.BooleanField(required=False, label="Default account: auto-grow adds servers here")

    def __init__(self, *args, provider: str, credential: ProviderCredential | None, **kwargs):
        if credential is not None:
            kwargs.setdefault(
                "initial",
                {
                    name: getattr(credential, name)
                    for name in ("base_url", "default_region", "default_size", "default_image", "is_default")
                },
            )
        super().__init__(*args, **kwargs)
        self.provider = provider
        if credential is not None:
            kept = "Write-only: leave empty to keep the stored token. Checked against the cloud when saved."
            self.fields["token"].help_text = kept
        for name, datalist in (("default_region", "region"), ("default_size", "size")):
            self.fields[name].widget.attrs["list"] = f"{datalist}-choices"
        self.fields["default_image"].widget.attrs["list"] = "image-choices"

    def save(self, *, actor) -> ProviderCredential | None:
        """Through the service; a refusal (the cloud refused the token) goes on the form."""
        try:
            return services.provider_credential_save(provider=self.provider, actor=actor, **self.cleaned_data)
        except ApplicationError as exc:
            for name, messages in (exc.fields or {}).items():
                if name in self.fields and name != "token":
                    self.add_error(name, messages)
            self.add_error("token" if "token" in (exc.fields or {}) else None, exc.message)
            return None


class DefaultAccountForm(forms.Form):
    is_default = forms.TypedChoiceField(
        choices=[("true", "default"), ("false", "not default")], coerce=lambda value: value == "true"
    )
