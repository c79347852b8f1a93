"""Sign-in: lockout after repeated failures (django-axes), staff second factor (TOTP + recovery
codes, django-otp), a reset command for a lost device, all audited."""

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from chom.models import AuditEvent

PASSWORD = "correct horse battery staple"


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_user("root@chom.test", "root@chom.test", PASSWORD, is_staff=True)


def _login(client, password=PASSWORD, path="/login/", ip="198.51.100.20"):
    return client.post(path, {"username": "root@chom.test", "password": password}, REMOTE_ADDR=ip)


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_it_locks_out_after_repeated_failures_then_lets_in_after_the_cool_off(
    client, admin_user, settings, path
):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "wrong", path=path).status_code == 200  # the form again, with an error
    assert _login(client, "wrong", path=path).status_code == 429  # the limit-th failure locks
    locked = _login(client, path=path)  # even the right password
    assert locked.status_code == 429 and b"Too many failed sign-ins" in locked.content
    assert AuditEvent.objects.filter(action="auth.locked_out", target="user:root@chom.test").exists()
    assert AuditEvent.objects.filter(action="auth.login_failed").count() >= settings.AXES_FAILURE_LIMIT
    # Another address is not locked out by this one's failures.
    assert _login(client, ip="198.51.100.21", path=path).status_code == 302
    time.sleep(1.2)
    assert _login(client, path=path).status_code == 302


def _code(device: TOTPDevice, offset: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + offset
    return f"{totp.token():0{device.digits}d}"


def test_staff_enrol_a_second_factor_then_need_it_at_every_sign_in(client, admin_user, settings):
    settings.STAFF_REQUIRE_2FA = True
    assert _login(client).status_code == 302
    # The dashboard (and the admin) wait for the second factor; the API and /health do not.
    for path in ("/", "/admin/", "/fleet/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/account/2fa/"), path
    assert client.get("/health").status_code in (200, 503)
    setup = client.get("/account/2fa/")
    assert b"Set up two-factor sign-in" in setup.content and b"data:image/svg+xml" in setup.content
    device = TOTPDevice.objects.get(user=admin_user)
    wrong = "000000" if _code(device) != "000000" else "111111"
    assert client.post("/account/2fa/", {"token": wrong}).status_code == 200
    time.sleep(1.1)  # django-otp throttles the next try for a second after a failure
    done = client.post("/account/2fa/", {"token": _code(device), "next": "/fleet/"})
    codes = done.context["codes"]
    assert len(codes) == 10 and b"Continue" in done.content
    assert client.get("/").status_code == 200

    # A new session: password, then a code; a recovery code works once.
    client.logout()
    assert _login(client).status_code == 302
    assert client.get("/").status_code == 302
    verify = client.get("/account/2fa/")
    assert b"Second factor" in verify.content
    assert client.post("/account/2fa/", {"token": "12345678"}).status_code == 200
    time.sleep(1.1)
    assert client.post("/account/2fa/", {"token": codes[0]}).status_code == 302
    assert client.get("/").status_code == 200
    client.logout()
    _login(client)
    assert client.post("/account/2fa/", {"token": codes[0]}).status_code == 200  # used up
    assert client.get("/").status_code == 302
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"auth.2fa_enrolled", "auth.2fa_passed", "auth.2fa_failed", "auth.logged_in"} <= actions


def test_an_enrolled_staff_user_is_asked_even_where_2fa_is_optional(client, admin_user, settings):
    settings.STAFF_REQUIRE_2FA = False
    TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True)
    _login(client)
    assert client.get("/").status_code == 302


def test_reset_2fa_removes_a_lost_device_and_is_audited(client, admin_user, settings, capsys):
    settings.STAFF_REQUIRE_2FA = True
    TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True)
    call_command("reset_2fa", "root@chom.test")
    assert "removed 1 device(s)" in capsys.readouterr().out
    assert not TOTPDevice.objects.filter(user=admin_user, confirmed=True).exists()
    assert AuditEvent.objects.filter(action="auth.2fa_reset").exists()
    _login(client)
    assert b"Set up two-factor sign-in" in client.get("/account/2fa/").content


def test_production_requires_staff_2fa():
    from tests.support.production import production_setting

    assert production_setting("STAFF_REQUIRE_2FA", STAFF_REQUIRE_2FA="false") == "True"
