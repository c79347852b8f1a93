"""Staff sign in with a second factor: a TOTP app (django-otp), with ten one-time recovery codes.

After the password (django-axes counts the failures), `StaffTwoFactorMiddleware` sends a staff
session that has not passed its second factor to /account/2fa/: to enrol (scan the key, confirm
with one code, note the recovery codes shown once) when the user has no device yet and
STAFF_REQUIRE_2FA is on, else to enter a code. A tenant's member may enrol too (from their API
tokens page) and is then asked at every sign-in the same way. The API is untouched (bearer
tokens), and so are the health, metrics and webhook endpoints. `manage.py reset_2fa EMAIL`
removes a lost device.
"""

import secrets

import segno
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from chom.http import client_ip
from chom.services import audit_record

RECOVERY_CODES = 10
# Paths a staff session may use before its second factor (besides the 2FA pages themselves).
OPEN_PREFIXES = ("/api/", "/health", "/metrics", "/webhooks/", "/observability/sd/", "/static/", "/logout/")


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Code from your authenticator app (or a recovery code)",
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


def _needs_second_factor(user) -> bool:
    """Staff when STAFF_REQUIRE_2FA is on; anyone (a tenant's member too) who enrolled a device."""
    if not user.is_authenticated or user.is_verified():
        return False
    return (user.is_staff and settings.STAFF_REQUIRE_2FA) or user_has_device(user)


class StaffTwoFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path
        if (
            _needs_second_factor(request.user)
            and not path.startswith(OPEN_PREFIXES)
            and not path.startswith("/account/2fa/")
        ):
            return redirect(f"{reverse('two-factor')}?next={path}")
        return self.get_response(request)


def _next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    ok = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})
    return target if ok and target.startswith("/") else reverse("dashboard")


def _confirmed(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


@login_required
def two_factor(request):
    """Enter a code; or, without a confirmed device, enrol one."""
    user = request.user
    if not _confirmed(user):
        return _enrol(request)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(user, form.cleaned_data["token"].replace(" ", ""))
        if device is not None:
            otp_login(request, device)
            audit_record(action="auth.2fa_passed", actor=user, source_ip=client_ip(request),
                         data={"device": type(device).__name__})  # fmt: skip
            return redirect(_next(request))
        audit_record(action="auth.2fa_failed", actor=user, source_ip=client_ip(request))
        form.add_error(
            "token",
            "That code is not valid, was already used, or came right after a wrong one: wait a moment.",
        )
    return render(request, "chom/two_factor_verify.html", {"form": form, "next": _next(request)})


def _enrol(request):
    user = request.user
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"].replace(" ", "")):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            codes = recovery_codes_issue(user=user)
            audit_record(action="auth.2fa_enrolled", actor=user, source_ip=client_ip(request))
            return render(request, "chom/two_factor_codes.html", {"codes": codes, "next": _next(request)})
        form.add_error(
            "token", "That code does not match: check the time on your phone, wait a moment, retry."
        )
    qr = segno.make(device.config_url, error="m").svg_data_uri(scale=4)
    context = {"form": form, "qr": qr, "key": device.bin_key.hex(), "config_url": device.config_url}
    return render(request, "chom/two_factor_setup.html", context | {"next": _next(request)})


def recovery_codes_issue(*, user) -> list[str]:
    """Ten new one-time recovery codes (the old ones stop working); shown once."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name="recovery codes")
    device.token_set.all().delete()
    # 48 random bits each, as xxxx-xxxx-xxxx (django-otp stores at most 16 characters).
    codes = [_grouped(secrets.token_hex(6)) for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in codes])
    return codes


def _grouped(hex_digits: str) -> str:
    return "-".join(hex_digits[i : i + 4] for i in range(0, len(hex_digits), 4))


def two_factor_reset(*, user, actor=None) -> int:
    """Remove USER's devices (a lost phone): the next sign-in enrols a new one. Returns how many."""
    removed = (
        TOTPDevice.objects.filter(user=user).delete()[0] + StaticDevice.objects.filter(user=user).delete()[0]
    )
    audit_record(action="auth.2fa_reset", actor=actor, target=f"user:{user.email or user.username}")
    return removed


@receiver(user_login_failed)
def _audit_failed_login(sender, credentials, request=None, **kwargs):
    audit_record(
        action="auth.login_failed",
        target=f"user:{credentials.get('username', '')[:150]}",
        source_ip=client_ip(request) if request is not None else None,
    )


@receiver(user_logged_in)
def _audit_login(sender, request, user, **kwargs):
    audit_record(action="auth.logged_in", actor=user, source_ip=client_ip(request))


def _audit_lockout(sender, request=None, username=None, ip_address=None, **kwargs):
    audit_record(action="auth.locked_out", target=f"user:{(username or '')[:150]}", source_ip=ip_address)


def connect_lockout_signal() -> None:
    from axes.signals import user_locked_out

    user_locked_out.connect(_audit_lockout, dispatch_uid="chom-audit-lockout")
