"""Tenants in the dashboard (staff): list/search, create (owner invited, owner token shown once),
tier, suspension, members and roles, tokens, usage against limits. Then the invitation: a one-time,
expiring link to set a password, and the one page a non-staff person sees, their API tokens."""

import re
import smtplib
import time
from urllib.parse import urlparse

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.test import Client
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from chom.models import ApiToken, AuditEvent, Membership, Operation, Tenant
from chom.services import invitation_tokens, invitation_url, token_create
from fleet.models import Vps
from sites.models import Site

PASSWORD = "a long enough pass phrase 42"


@pytest.fixture
def staff_client(db):
    client = Client()
    client.force_login(get_user_model().objects.create_user("ops@chom.test", "ops@chom.test", is_staff=True))
    return client


def _api(token: str, path: str = "/api/v1/tenant"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(path)


def _shown_token(response) -> str:
    return re.search(r'value="(chom_[^"]+)"', response.content.decode()).group(1)


def _path(url: str) -> str:
    return urlparse(url).path


def _link(message) -> str:
    return _path(re.search(r"https?://\S+/account/welcome/\S+/", message.body).group(0))


def _messages(response) -> str:
    return " ".join(str(m) for m in response.context["messages"])


def _audited(action: str, **filters) -> AuditEvent:
    return AuditEvent.objects.get(action=action, **filters)


# --- staff: tenants ----------------------------------------------------------------------------


def test_it_lists_tenants_and_searches_by_slug_name_or_member_email(staff_client, alice, bob, charlie):
    listing = staff_client.get("/tenants/")
    assert listing.status_code == 200
    assert b"acme" in listing.content and b"globex" in listing.content
    found = staff_client.get("/tenants/", {"q": "glob"}).content
    assert b"globex" in found and b'href="/tenants/acme/"' not in found
    by_member = staff_client.get("/tenants/", {"q": "bob@acme"}).content
    assert b'href="/tenants/acme/"' in by_member and b'href="/tenants/globex/"' not in by_member
    assert "No tenant matches" in staff_client.get("/tenants/", {"q": "nobody"}).content.decode()


def test_it_creates_a_tenant_shows_the_owner_token_once_and_emails_the_invitation(staff_client):
    response = staff_client.post(
        "/tenants/",
        {"slug": "initech", "name": "Initech", "tier": "pro", "owner_email": "peter@initech.test"},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = _shown_token(response)
    assert _api(token).json()["slug"] == "initech"
    tenant = Tenant.objects.get(slug="initech")
    assert (tenant.name, tenant.tier) == ("Initech", "pro")
    assert Membership.objects.get(tenant=tenant).role == "owner"
    [invitation] = mail.outbox
    assert invitation.to == ["peter@initech.test"]
    assert "/account/welcome/" in invitation.body
    assert token not in invitation.body
    assert _audited("tenant.created", tenant=tenant).actor.username == "ops@chom.test"
    assert _audited("membership.invited", tenant=tenant).target == "user:peter@initech.test"
    # Once: the tenant's page lists the token by its prefix, never its secret.
    page = staff_client.get("/tenants/initech/").content.decode()
    assert token.split("_")[1] in page and token not in page


def test_it_refuses_a_taken_or_malformed_slug_on_the_form(staff_client, alice):
    taken = staff_client.post("/tenants/", {"slug": "acme", "tier": "pro", "owner_email": "x@y.test"})
    assert taken.status_code == 200 and "already exists" in taken.content.decode()
    bad = staff_client.post("/tenants/", {"slug": "Bad Slug;rm", "tier": "pro", "owner_email": "x@y.test"})
    assert bad.status_code == 200 and Tenant.objects.count() == 1
    assert mail.outbox == []


def test_it_tells_staff_when_the_invitation_could_not_be_sent(staff_client, settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingMailServer"
    response = staff_client.post(
        "/tenants/", {"slug": "hooli", "tier": "starter", "owner_email": "g@hooli.test"}
    )
    assert "could not be sent" in response.content.decode()
    assert _shown_token(response)  # the tenant exists all the same
    assert AuditEvent.objects.filter(action="membership.invitation_failed").exists()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    owner = Membership.objects.get(tenant__slug="hooli")
    staff_client.post(f"/tenants/hooli/members/{owner.pk}/invite/")
    assert [m.to for m in mail.outbox] == [["g@hooli.test"]]


class RefusingMailServer(BaseEmailBackend):
    """A mail server that is down (it can fail: that is what it is for)."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


def test_the_refusing_mail_server_refuses(settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingMailServer"
    with pytest.raises(smtplib.SMTPException):
        mail.send_mail("s", "b", None, ["a@b.test"])


def test_it_changes_the_tier_and_the_limits_with_it(staff_client, alice):
    assert _api(alice.token).json()["limits"]["max_sites"] == 25
    response = staff_client.post("/tenants/acme/tier/", {"tier": "enterprise"}, follow=True)
    assert "enterprise tier" in _messages(response)
    assert _api(alice.token).json()["limits"]["max_sites"] == 250
    assert _audited("tenant.tier_changed").data == {"from": "pro", "to": "enterprise"}
    page = staff_client.get("/tenants/acme/").content.decode()
    assert "<td>250</td>" in page


def test_it_shows_usage_against_the_tiers_limits(staff_client, alice):
    vps = Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10", status="active")
    for n in range(4):
        Site.objects.create(tenant=alice.tenant, vps=vps, domain=f"s{n}.example.com", type="static")
    Tenant.objects.filter(pk=alice.tenant.pk).update(tier="starter")  # 3 sites allowed
    page = staff_client.get("/tenants/acme/")
    rows = {row.name: row for row in page.context["usage"]}
    assert (rows["sites"].used, rows["sites"].limit, rows["sites"].over) == (4, 3, True)
    assert rows["operations queued or running"].limit == 10
    assert "over</span>" in page.content.decode()


def test_it_suspends_and_unsuspends_a_tenant_and_only_the_sites_it_held(staff_client, alice):
    vps = Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10", status="active")
    live = Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="a.example.com", type="static", status="active"
    )
    held = Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="b.example.com", type="static", status="suspended",
        suspended_reason="abuse",
    )  # fmt: skip
    response = staff_client.post("/tenants/acme/suspend/", {"reason": "phishing report #42"}, follow=True)
    assert "1 site(s) being suspended" in _messages(response)
    tenant = Tenant.objects.get(pk=alice.tenant.pk)
    assert (tenant.status, tenant.suspension_reason) == ("suspended", "phishing report #42")
    assert Site.objects.get(pk=live.pk).suspended_reason == "tenant_suspended"
    assert Operation.objects.filter(kind="site.suspend", target_id=str(live.pk), status="queued").exists()
    assert _audited("tenant.suspended").data["reason"] == "phishing report #42"
    assert b"Unsuspend tenant" in response.content

    response = staff_client.post("/tenants/acme/unsuspend/", follow=True)
    assert "active again; 1 site(s) being unsuspended" in _messages(response)
    assert Tenant.objects.get(pk=alice.tenant.pk).status == "active"
    assert Operation.objects.filter(kind="site.unsuspend", target_id=str(live.pk)).exists()
    assert Site.objects.get(pk=held.pk).suspended_reason == "abuse"  # not this suspension's to lift
    assert AuditEvent.objects.filter(action="tenant.unsuspended").exists()


def test_it_refuses_a_suspension_without_a_reason_and_shows_why(staff_client, alice):
    response = staff_client.post(
        "/tenants/acme/suspend/", {"reason": ""}, HTTP_REFERER="/tenants/acme/", follow=True
    )
    assert response.redirect_chain[-1][0] == "/tenants/acme/"
    assert "reason" in _messages(response)
    assert Tenant.objects.get(pk=alice.tenant.pk).status == "active"


def test_it_leaves_a_billing_suspension_to_billing(staff_client, alice):
    Tenant.objects.filter(pk=alice.tenant.pk).update(status="suspended")  # dunning: no staff reason
    response = staff_client.post("/tenants/acme/unsuspend/", HTTP_REFERER="/tenants/acme/", follow=True)
    assert "billing suspended it" in _messages(response)
    assert Tenant.objects.get(pk=alice.tenant.pk).status == "suspended"
    assert "comes back once paid" in response.content.decode()


def test_it_adds_a_member_with_a_role_and_emails_the_invitation(staff_client, alice):
    response = staff_client.post(
        "/tenants/acme/members/", {"email": "dora@acme.test", "role": "admin"}, follow=True
    )
    assert "invitation emailed" in _messages(response)
    assert Membership.objects.get(tenant=alice.tenant, user__email="dora@acme.test").role == "admin"
    [invitation] = mail.outbox
    assert invitation.to == ["dora@acme.test"] and "as admin" in invitation.body
    assert "invited, no password yet" in response.content.decode()
    # Added again: only the role changes, nobody is invited twice.
    staff_client.post("/tenants/acme/members/", {"email": "dora@acme.test", "role": "viewer"})
    assert Membership.objects.get(user__email="dora@acme.test").role == "viewer"
    assert len(mail.outbox) == 1


def test_it_tells_someone_who_has_a_password_already_without_a_link(staff_client, alice, charlie):
    charlie.user.set_password(PASSWORD)
    charlie.user.save()
    staff_client.post("/tenants/acme/members/", {"email": "charlie@globex.test", "role": "member"})
    [notice] = mail.outbox
    assert "/account/welcome/" not in notice.body and "/login/" in notice.body


def test_it_changes_a_members_role_but_keeps_an_owner(staff_client, alice, bob):
    member = Membership.objects.get(user=bob.user)
    staff_client.post(f"/tenants/acme/members/{member.pk}/role/", {"role": "admin"})
    assert Membership.objects.get(pk=member.pk).role == "admin"
    assert _audited("membership.role_changed").data == {"from": "member", "to": "admin"}
    owner = Membership.objects.get(user=alice.user)
    response = staff_client.post(
        f"/tenants/acme/members/{owner.pk}/role/",
        {"role": "viewer"},
        HTTP_REFERER="/tenants/acme/",
        follow=True,
    )
    assert "at least one owner" in _messages(response)
    assert Membership.objects.get(pk=owner.pk).role == "owner"
    staff_client.post(f"/tenants/acme/members/{member.pk}/role/", {"role": "owner"})
    staff_client.post(f"/tenants/acme/members/{owner.pk}/role/", {"role": "viewer"})
    assert Membership.objects.get(pk=owner.pk).role == "viewer"  # bob owns it now


def test_it_removes_a_member_and_revokes_their_tokens(staff_client, alice, bob):
    assert _api(bob.token).status_code == 200
    member = Membership.objects.get(user=bob.user)
    response = staff_client.post(f"/tenants/acme/members/{member.pk}/remove/", follow=True)
    assert "1 API token(s) revoked" in _messages(response)
    assert not Membership.objects.filter(pk=member.pk).exists()
    assert _api(bob.token).status_code == 401
    assert _audited("membership.removed").data == {"role": "member", "revoked": 1}
    owner = Membership.objects.get(user=alice.user)
    staff_client.post(f"/tenants/acme/members/{owner.pk}/remove/")
    assert Membership.objects.filter(pk=owner.pk).exists()  # the last owner stays


def test_it_creates_a_token_for_a_member_shown_once_and_revokes_it(staff_client, alice, victor):
    viewer = Membership.objects.get(user=victor.user)
    response = staff_client.post(
        "/tenants/acme/tokens/",
        {"member": viewer.pk, "name": "grafana", "scope": "read", "expires_in_days": 30},
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    token = _shown_token(response)
    assert _api(token).status_code == 200
    created = ApiToken.objects.get(name="grafana")
    assert (created.user, created.scope, created.expires_at is not None) == (victor.user, "read", True)
    assert _audited("token.created", target=f"token:{created.prefix}").actor.username == "ops@chom.test"
    staff_client.post(f"/tenants/acme/tokens/{created.pk}/revoke/")
    assert _api(token).status_code == 401
    assert AuditEvent.objects.filter(action="token.revoked", target=f"token:{created.prefix}").exists()


def test_it_never_touches_another_tenants_token_or_member_through_this_tenants_page(
    staff_client, alice, charlie
):
    theirs = ApiToken.objects.get(user=charlie.user)
    assert staff_client.post(f"/tenants/acme/tokens/{theirs.pk}/revoke/").status_code == 404
    their_owner = Membership.objects.get(user=charlie.user)
    assert staff_client.post(f"/tenants/acme/members/{their_owner.pk}/remove/").status_code == 404
    assert _api(charlie.token).status_code == 200


def test_it_refuses_a_form_action_without_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("ops@chom.test", is_staff=True))
    assert client.post("/tenants/acme/tier/", {"tier": "enterprise"}).status_code == 403
    assert Tenant.objects.get(pk=alice.tenant.pk).tier == "pro"


# --- the invitation and the one page a non-staff person sees ----------------------------------------


def _accept(client, link: str, password: str = PASSWORD):
    form = client.get(link)
    assert form.status_code == 302  # the token leaves the address bar
    set_password = form["Location"]
    assert "set-password" in set_password and client.get(set_password).status_code == 200
    return client.post(set_password, {"new_password1": password, "new_password2": password})


def test_an_invited_member_sets_a_password_once_then_creates_their_token(staff_client, alice):
    staff_client.post("/tenants/acme/members/", {"email": "dora@acme.test", "role": "member"})
    link = _link(mail.outbox[0])
    client = Client()
    done = _accept(client, link)
    assert done.status_code == 302 and done["Location"] == "/account/tokens/"
    dora = get_user_model().objects.get(username="dora@acme.test")
    assert dora.check_password(PASSWORD)
    assert AuditEvent.objects.filter(action="user.password_set", actor=dora).exists()

    page = client.get("/account/tokens/")
    assert page.status_code == 200 and "You have no API tokens yet" in page.content.decode()
    created = client.post("/account/tokens/", {"tenant": alice.tenant.pk, "name": "laptop", "scope": "write"})
    assert "no-store" in created["Cache-Control"]
    token = _shown_token(created)
    assert _api(token, "/api/v1/sites").status_code == 200
    assert token not in client.get("/account/tokens/").content.decode()

    # The link worked once: now it is refused, and the password stays.
    again = Client().get(link)
    assert again.status_code == 200 and "does not work any more" in again.content.decode()
    assert again.context["form"] is None


def test_an_invitation_link_expires(alice, bob, settings):
    settings.PASSWORD_RESET_TIMEOUT = 3 * 86400
    issued = invitation_tokens._num_seconds(invitation_tokens._now())

    def link(days_ago: int) -> str:
        stale = invitation_tokens._make_token_with_timestamp(
            bob.user, issued - days_ago * 86400, invitation_tokens.secret
        )
        return re.sub(r"/[^/]+/$", f"/{stale}/", _path(invitation_url(user=bob.user)))

    assert Client().get(link(2)).status_code == 302  # still good
    expired = Client().get(link(4))
    assert expired.status_code == 200 and "does not work any more" in expired.content.decode()


def test_an_invitation_link_is_not_a_password_reset_link_nor_another_persons(alice, bob):
    from django.contrib.auth.tokens import default_token_generator

    own = _path(invitation_url(user=bob.user))
    reset_token = default_token_generator.make_token(bob.user)
    forged = re.sub(r"/[^/]+/$", f"/{reset_token}/", own)
    assert "does not work any more" in Client().get(forged).content.decode()
    alices_uid = urlsafe_base64_encode(force_bytes(alice.user.pk))
    someone_else = re.sub(r"/welcome/[^/]+/", f"/welcome/{alices_uid}/", own)
    assert "does not work any more" in Client().get(someone_else).content.decode()


def test_it_refuses_a_weak_password_on_the_welcome_page(alice, bob):
    client = Client()
    answer = _accept(client, _path(invitation_url(user=bob.user)), password="123")
    assert answer.status_code == 200 and answer.context["form"].errors
    assert not get_user_model().objects.get(pk=bob.user.pk).has_usable_password()


@pytest.fixture
def dora(alice):
    """A member of acme who signed up with a password (not staff)."""
    user = get_user_model().objects.create_user("dora@acme.test", "dora@acme.test", PASSWORD)
    Membership.objects.create(user=user, tenant=alice.tenant, role="member")
    return user


def test_a_non_staff_person_signs_in_to_their_tokens_page_and_sees_nothing_else(client, dora):
    signed_in = client.post("/login/?next=/tenants/", {"username": "dora@acme.test", "password": PASSWORD})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/account/tokens/"
    page = client.get("/account/tokens/").content.decode()
    assert "Your API tokens" in page and 'href="/fleet/"' not in page and 'href="/tenants/"' not in page
    for path in ("/", "/tenants/", "/tenants/acme/", "/operations/", "/fleet/", "/sites/", "/admin/"):
        response = client.get(path)
        assert response.status_code == 302 and "login" in response["Location"], path
    assert client.post("/tenants/acme/tier/", {"tier": "enterprise"}).status_code == 302
    assert Tenant.objects.get(slug="acme").tier == "pro"


def test_a_person_revokes_only_their_own_tokens(client, dora, alice):
    mine = token_create(user=dora, tenant=alice.tenant, name="mine")
    client.force_login(dora)
    alices = ApiToken.objects.get(user=alice.user, tenant=alice.tenant)
    assert client.post(f"/account/tokens/{alices.pk}/revoke/").status_code == 404
    assert client.post(f"/account/tokens/{mine.token.pk}/revoke/").status_code == 302
    assert _api(mine.plaintext).status_code == 401
    assert _api(alice.token).status_code == 200


def test_a_viewer_may_not_create_tokens_on_their_page(client, victor):
    victor.user.set_password(PASSWORD)
    victor.user.save()
    client.force_login(victor.user)
    page = client.get("/account/tokens/").content.decode()
    assert "Your role may not create API tokens" in page
    before = ApiToken.objects.count()
    client.post("/account/tokens/", {"tenant": victor.tenant.pk, "name": "x", "scope": "read"})
    assert ApiToken.objects.count() == before


def test_a_member_who_enrolled_a_second_factor_is_asked_for_it(client, dora):
    device = TOTPDevice.objects.create(user=dora, name="phone", confirmed=True)
    client.post("/login/", {"username": "dora@acme.test", "password": PASSWORD})
    response = client.get("/account/tokens/")
    assert response.status_code == 302 and response["Location"].startswith("/account/2fa/")
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    verified = client.post("/account/2fa/?next=/account/tokens/", {"token": f"{totp.token():06d}"})
    assert verified["Location"] == "/account/tokens/"
    assert client.get("/account/tokens/").status_code == 200


# --- the admin: inspect, never change ---------------------------------------------------------------


def test_the_admin_shows_the_cores_rows_read_only_and_never_a_token_hash(admin_client, alice):
    token = ApiToken.objects.get(user=alice.user)
    op = Operation.objects.create(kind="system.selfcheck", tenant=alice.tenant)
    for model, pk in [
        ("tenant", alice.tenant.pk), ("membership", Membership.objects.get(user=alice.user).pk),
        ("apitoken", token.pk), ("auditevent", AuditEvent.objects.first().pk), ("operation", op.pk),
    ]:  # fmt: skip
        assert admin_client.get(f"/admin/chom/{model}/").status_code == 200, model
        detail = admin_client.get(f"/admin/chom/{model}/{pk}/change/")
        assert detail.status_code == 200, model
        assert token.secret_hash not in detail.content.decode()
        assert b'name="_save"' not in detail.content, model
        assert admin_client.get(f"/admin/chom/{model}/add/").status_code == 403
    for model in ("operationlogentry", "workerheartbeat"):
        assert admin_client.get(f"/admin/chom/{model}/").status_code == 200
    assert token.secret_hash not in admin_client.get("/admin/chom/apitoken/").content.decode()
