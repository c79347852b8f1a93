"""Dashboard forms of the core: input checks only; the services decide and refuse."""

from datetime import timedelta

from django import forms
from django.utils import timezone

from chom import selectors
from chom.errors import ApplicationError
from chom.models import ApiToken, Membership
from chom.tiers import TIER_CHOICES

ROLE_CHOICES = Membership.Role.choices
PLATFORM = "platform"  # the tenant choice of a staff person's own platform token


def valid_or_refuse(form: forms.Form) -> dict:
    """The cleaned data of a bound form, or the refusal the dashboard shows on the page it came from
    (for action buttons that have no page of their own). Every app's dashboard uses this one."""
    if form.is_valid():
        return form.cleaned_data
    fields = {name: [str(e) for e in errors] for name, errors in form.errors.items()}
    first = next(iter(fields.values()))[0]
    raise ApplicationError(400, "invalid_input", first, fields)


def drf_messages(detail) -> list[str]:
    """DRF's nested error detail (lists, dicts by field or list index) as flat messages, for forms
    that check their input with the API's own serializers."""
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in drf_messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in drf_messages(value)]
    return [str(detail)]


class TenantCreateForm(forms.Form):
    slug = forms.SlugField(max_length=50, help_text="Lowercase letters, digits and dashes; in URLs.")
    name = forms.CharField(max_length=200, required=False)
    tier = forms.ChoiceField(choices=TIER_CHOICES)
    owner_email = forms.EmailField(label="Owner's email", help_text="Gets a one-time link to sign up.")

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if slug != slug.lower():
            raise forms.ValidationError("Lowercase letters only.")
        if selectors.tenant_slug_taken(slug):
            raise forms.ValidationError("A tenant with this slug already exists.")
        return slug


class TierForm(forms.Form):
    tier = forms.ChoiceField(choices=TIER_CHOICES)


class SuspendForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        help_text="Recorded in the audit log and shown on the tenant.",
        error_messages={"required": "A suspension needs a reason."},
    )


class MemberAddForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Membership.Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class _TokenFields(forms.Form):
    name = forms.CharField(max_length=100)
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.WRITE)
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="Empty: never expires."
    )

    def expires_at(self):
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=days) if days else None


class MemberTokenForm(_TokenFields):
    """Staff create a token for any of the tenant's members: the only way a viewer gets one (its
    role may not create tokens itself, as in the API); its role still limits what it can do."""

    member = forms.ModelChoiceField(queryset=Membership.objects.none(), label="For")
    field_order = ["member", "name", "scope", "expires_in_days"]

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["member"].queryset = selectors.tenant_members(tenant=tenant)
        self.fields["member"].label_from_instance = lambda m: f"{m.user.email or m.user.username} ({m.role})"


class OwnTokenForm(_TokenFields):
    """A person creates their own token, for a tenant whose role allows it (or, staff, the platform)."""

    tenant = forms.ChoiceField(label="For")
    field_order = ["tenant", "name", "scope", "expires_in_days"]

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.memberships = {
            str(m.tenant_id): m for m in selectors.memberships_of_user(user=user) if m.can_manage_tokens
        }
        choices = [(pk, f"{m.tenant.name} ({m.tenant.slug}, {m.role})") for pk, m in self.memberships.items()]
        if user.is_staff:
            choices.append((PLATFORM, "the platform (staff token)"))
        self.fields["tenant"].choices = choices

    def chosen_tenant(self):
        choice = self.cleaned_data["tenant"]
        return None if choice == PLATFORM else self.memberships[choice].tenant
