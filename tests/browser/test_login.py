"""Signing in through the real forms: password, then (when enrolled or required) the TOTP code."""

from urllib.parse import urlsplit

from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.browser.conftest import STAFF_EMAIL, STAFF_PASSWORD
from tests.browser.helpers import (
    assert_accessible,
    problems,
    screenshot,
    submit_code,
    submit_password,
    totp_code,
    visit,
)


def _path(page) -> str:
    return urlsplit(page.url).path


def test_it_shows_an_accessible_login_page(page, live_server, transactional_db):
    assert visit(page, f"{live_server.url}/login/") == []
    screenshot(page, "login")
    assert_accessible(page)


def test_it_signs_staff_in_with_a_password_where_2fa_is_optional(page, live_server, staff_user):
    submit_password(page, live_server.url, username=STAFF_EMAIL, password=STAFF_PASSWORD)
    assert _path(page) == "/"
    assert page.get_by_role("button", name=f"Log out {STAFF_EMAIL}").is_visible()
    assert problems(page) == []


def test_it_keeps_a_wrong_password_out(page, live_server, staff_user):
    submit_password(page, live_server.url, username=STAFF_EMAIL, password="not-the-password")
    assert _path(page) == "/login/"
    assert page.get_by_role("button", name="Log in").is_visible()


def test_it_asks_an_enrolled_staff_user_for_the_code_from_the_app(page, live_server, staff_user):
    device = TOTPDevice.objects.create(user=staff_user, name="phone", confirmed=True)
    submit_password(page, live_server.url, username=STAFF_EMAIL, password=STAFF_PASSWORD)
    assert _path(page) == "/account/2fa/"
    screenshot(page, "two-factor-verify")
    assert_accessible(page)
    submit_code(page, device)
    assert _path(page) == "/"
    assert visit(page, f"{live_server.url}/operations/") == []
    assert _path(page) == "/operations/"


def test_it_refuses_a_code_from_another_time(page, live_server, staff_user):
    device = TOTPDevice.objects.create(user=staff_user, name="phone", confirmed=True)
    submit_password(page, live_server.url, username=STAFF_EMAIL, password=STAFF_PASSWORD)
    page.get_by_label("Code from your authenticator app").fill(totp_code(device, offset=-3600))
    with page.expect_navigation():
        page.get_by_role("button", name="Verify").click()
    assert _path(page) == "/account/2fa/"
    assert page.get_by_text("That code is not valid").is_visible()
    assert visit(page, f"{live_server.url}/operations/") == []
    assert _path(page) == "/account/2fa/"


def test_it_enrols_a_second_factor_where_staff_must_use_one(page, live_server, staff_user, settings):
    settings.STAFF_REQUIRE_2FA = True
    submit_password(page, live_server.url, username=STAFF_EMAIL, password=STAFF_PASSWORD)
    assert _path(page) == "/account/2fa/"
    assert page.get_by_role("heading", name="Set up two-factor sign-in").is_visible()
    screenshot(page, "two-factor-setup")
    assert_accessible(page)
    submit_code(page, TOTPDevice.objects.get(user=staff_user))
    assert page.get_by_role("heading", name="Two-factor sign-in is on").is_visible()
    screenshot(page, "two-factor-recovery-codes")
    assert_accessible(page)
    with page.expect_navigation():
        page.get_by_role("link", name="Continue").click()
    assert _path(page) == "/"
    assert problems(page) == []
