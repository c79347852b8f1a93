"""Writes of the core: tenants, memberships, invitations, API tokens, audit events."""

import hashlib
import hmac
import logging
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.text import slugify

from chom import hooks
from chom.errors import ApplicationError
from chom.models import ApiToken, AuditEvent, Membership, Tenant
from chom.operations import OperationContext, register
from chom.tiers import TIERS

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "chom"  # noqa: S105 - a public marker, not a secret
# The reason a staff suspension gives the tenant's sites: only those come back on unsuspend.
TENANT_SUSPEND_REASON = "tenant_suspended"
_SECRET_KEYS = re.compile(r"pass|secret|token|key|authorization|credential", re.IGNORECASE)


def mask_data(data):
    """Replace values of secret-looking keys with '***', recursively."""
    if isinstance(data, dict):
        return {k: "***" if _SECRET_KEYS.search(str(k)) else mask_data(v) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_data(v) for v in data]
    return data


def audit_record(
    *, action: str, actor=None, tenant=None, target: str = "", source_ip=None, data=None
) -> AuditEvent:
    return AuditEvent.objects.create(
        action=action,
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_label=str(actor) if actor is not None else "system",
        tenant=tenant,
        target=target[:200],
        source_ip=source_ip,
        data=mask_data(data or {}),
    )


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    plaintext: str  # shown once, never stored


def token_create(
    *,
    user,
    tenant: Tenant | None,
    name: str,
    scope: str = ApiToken.Scope.WRITE,
    expires_at: datetime | None = None,
    actor=None,
    source_ip=None,
) -> IssuedToken:
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        tenant=tenant,
        name=name,
        prefix=prefix,
        secret_hash=_hash_secret(secret),
        scope=scope,
        expires_at=expires_at,
    )
    audit_record(
        action="token.created",
        actor=actor or user,
        tenant=tenant,
        target=f"token:{prefix}",
        source_ip=source_ip,
    )
    return IssuedToken(token=token, plaintext=f"{TOKEN_PREFIX}_{prefix}_{secret}")


def token_authenticate(*, raw: str) -> ApiToken | None:
    """The usable token for a bearer string, or None. Constant-time comparison of the hash."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    token = ApiToken.objects.select_related("user", "tenant").filter(prefix=parts[1]).first()
    if token is None or not hmac.compare_digest(token.secret_hash, _hash_secret(parts[2])):
        return None
    if not token.is_usable() or not token.user.is_active:
        return None
    now = timezone.now()
    # Throttle the write: last_used_at only needs minute precision.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_revoke(*, token: ApiToken, actor=None, source_ip=None) -> None:
    if token.revoked_at is None:
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
        audit_record(
            action="token.revoked",
            actor=actor,
            tenant=token.tenant,
            target=f"token:{token.prefix}",
            source_ip=source_ip,
        )


def user_get_or_create(*, email: str, is_staff: bool = False):
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=email, defaults={"email": email, "is_staff": is_staff}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    elif is_staff and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return user


def tenant_create(
    *, slug: str, name: str = "", tier: str, owner_email: str, actor=None, source_ip=None
) -> tuple[Tenant, IssuedToken]:
    """The tenant, its owner (created if new) and the owner's first API token (shown once)."""
    if not slug or slugify(slug) != slug:
        raise ApplicationError(
            400, "invalid_slug", f"The slug must be lowercase letters, digits and dashes: {slug!r}.",
            {"slug": ["Lowercase letters, digits and dashes only."]},
        )  # fmt: skip
    _check_tier(tier)
    with transaction.atomic():
        try:
            with transaction.atomic():
                tenant = Tenant.objects.create(slug=slug, name=name or slug, tier=tier)
        except IntegrityError:
            raise ApplicationError(
                409, "slug_taken", f"A tenant {slug!r} already exists.", {"slug": ["Already taken."]}
            )
        owner = user_get_or_create(email=owner_email)
        Membership.objects.create(user=owner, tenant=tenant, role=Membership.Role.OWNER)
        audit_record(
            action="tenant.created",
            actor=actor or owner,
            tenant=tenant,
            target=f"tenant:{slug}",
            source_ip=source_ip,
            data={"tier": tier, "owner": owner_email},
        )
        issued = token_create(
            user=owner, tenant=tenant, name="owner token", actor=actor or owner, source_ip=source_ip
        )
    return tenant, issued


@dataclass(frozen=True)
class Onboarding:
    tenant: Tenant
    token: IssuedToken  # the owner's first token, shown once
    invited: bool  # False: the mail server refused the invitation; resend it from the tenant page


def tenant_onboard(
    *, slug: str, name: str = "", tier: str, owner_email: str, actor=None, source_ip=None
) -> Onboarding:
    """Create the tenant (as `tenant_create`), then email the owner their invitation."""
    tenant, issued = tenant_create(
        slug=slug, name=name, tier=tier, owner_email=owner_email, actor=actor, source_ip=source_ip
    )
    owner = Membership.objects.select_related("user", "tenant").get(tenant=tenant, user=issued.token.user)
    invited = invitation_send(membership=owner, actor=actor, source_ip=source_ip)
    return Onboarding(tenant=tenant, token=issued, invited=invited)


def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise ApplicationError(400, "invalid_tier", f"No tier {tier!r}; one of: {', '.join(TIERS)}.")


def tenant_tier_change(*, tenant: Tenant, tier: str, actor=None, source_ip=None) -> Tenant:
    """Limits follow at once (they are read from the tier). A Stripe subscription, when the tenant
    has one, sets the tier again at its next change: billing follows what the customer pays."""
    _check_tier(tier)
    previous = tenant.tier
    if previous == tier:
        return tenant
    Tenant.objects.filter(pk=tenant.pk).update(tier=tier)
    tenant.tier = tier
    audit_record(
        action="tenant.tier_changed",
        actor=actor,
        tenant=tenant,
        target=f"tenant:{tenant.slug}",
        source_ip=source_ip,
        data={"from": previous, "to": tier},
    )
    return tenant


def tenant_suspend(*, tenant: Tenant, reason: str, actor=None, source_ip=None) -> list:
    """Suspend an active tenant and its live sites (the operations returned). New sites are refused
    while it is suspended; nothing is deleted."""
    reason = reason.strip()
    if not reason:
        raise ApplicationError(
            400, "reason_required", "Say why the tenant is suspended.", {"reason": ["Required."]}
        )
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if not tenant.may_be_suspended_by_staff:
            raise ApplicationError(
                409,
                "tenant_not_active",
                f"{tenant.slug} is {tenant.status}: only an active tenant can be suspended here "
                "(a past-due tenant is suspended by billing when its grace period ends).",
            )
        tenant.status = Tenant.Status.SUSPENDED
        tenant.suspension_reason = reason[:200]
        tenant.save(update_fields=["status", "suspension_reason"])
        ops = hooks.tenant_sites_hold(tenant=tenant, reason=TENANT_SUSPEND_REASON, actor=actor)
        audit_record(
            action="tenant.suspended",
            actor=actor,
            tenant=tenant,
            target=f"tenant:{tenant.slug}",
            source_ip=source_ip,
            data={"reason": reason, "operations": [str(op.id) for op in ops]},
        )
    return ops


def tenant_unsuspend(*, tenant: Tenant, actor=None, source_ip=None) -> list:
    """Lift a staff suspension: the tenant is active again and the sites it held come back."""
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if not tenant.suspended_by_staff:
            why = (
                "billing suspended it for an unpaid invoice; it comes back once paid"
                if tenant.status == Tenant.Status.SUSPENDED
                else f"it is {tenant.status}, not suspended"
            )
            raise ApplicationError(
                409, "not_suspended_by_staff", f"{tenant.slug} cannot be unsuspended: {why}."
            )
        reason = tenant.suspension_reason
        tenant.status = Tenant.Status.ACTIVE
        tenant.suspension_reason = ""
        tenant.save(update_fields=["status", "suspension_reason"])
        ops = hooks.tenant_sites_release(tenant=tenant, reason=TENANT_SUSPEND_REASON, actor=actor)
        audit_record(
            action="tenant.unsuspended",
            actor=actor,
            tenant=tenant,
            target=f"tenant:{tenant.slug}",
            source_ip=source_ip,
            data={"suspended_for": reason, "operations": [str(op.id) for op in ops]},
        )
    return ops


# --- members and invitations -------------------------------------------------------------------


def _check_role(role: str) -> None:
    if role not in Membership.Role.values:
        raise ApplicationError(
            400, "invalid_role", f"No role {role!r}; one of: {', '.join(Membership.Role.values)}."
        )


def _keep_an_owner(membership: Membership, *, new_role: str | None) -> None:
    """A tenant always keeps one owner: refuse demoting or removing (NEW_ROLE None) the last one."""
    if membership.role != Membership.Role.OWNER or new_role == Membership.Role.OWNER:
        return
    others = Membership.objects.select_for_update().filter(
        tenant_id=membership.tenant_id, role=Membership.Role.OWNER
    )
    if not others.exclude(pk=membership.pk).exists():
        raise ApplicationError(
            409, "last_owner", "A tenant keeps at least one owner: make someone else owner first."
        )


def _membership_set(*, tenant: Tenant, email: str, role: str, actor, source_ip) -> tuple[Membership, bool]:
    _check_role(role)
    user = user_get_or_create(email=email)
    with transaction.atomic():
        existing = Membership.objects.select_for_update().filter(user=user, tenant=tenant).first()
        if existing is not None:
            _keep_an_owner(existing, new_role=role)
        membership, created = Membership.objects.update_or_create(
            user=user, tenant=tenant, defaults={"role": role}
        )
        audit_record(
            action="membership.set",
            actor=actor,
            tenant=tenant,
            target=f"user:{email}",
            source_ip=source_ip,
            data={"role": role},
        )
    return membership, created


def membership_add(*, tenant: Tenant, email: str, role: str, actor=None, source_ip=None) -> Membership:
    """Add EMAIL to the tenant with ROLE, or set the role of a member already there."""
    return _membership_set(tenant=tenant, email=email, role=role, actor=actor, source_ip=source_ip)[0]


def membership_invite(
    *, tenant: Tenant, email: str, role: str, actor=None, source_ip=None
) -> tuple[Membership, bool | None]:
    """`membership_add`, then the invitation email to a new member. The second value: None when
    EMAIL was a member already (only the role changed, nobody is invited), else whether the
    invitation went out (False: the mail server refused; resend it from the tenant page)."""
    membership, created = _membership_set(
        tenant=tenant, email=email, role=role, actor=actor, source_ip=source_ip
    )
    if not created:
        return membership, None
    return membership, invitation_send(membership=membership, actor=actor, source_ip=source_ip)


def membership_role_set(*, membership: Membership, role: str, actor=None, source_ip=None) -> Membership:
    _check_role(role)
    with transaction.atomic():
        _keep_an_owner(membership, new_role=role)
        previous = membership.role
        Membership.objects.filter(pk=membership.pk).update(role=role)
        membership.role = role
        audit_record(
            action="membership.role_changed",
            actor=actor,
            tenant=membership.tenant,
            target=f"user:{membership.user.email or membership.user.username}",
            source_ip=source_ip,
            data={"from": previous, "to": role},
        )
    return membership


def membership_remove(*, membership: Membership, actor=None, source_ip=None) -> int:
    """Remove a member; their API tokens for this tenant are revoked with it. Returns how many."""
    with transaction.atomic():
        _keep_an_owner(membership, new_role=None)
        revoked = ApiToken.objects.filter(
            user_id=membership.user_id, tenant_id=membership.tenant_id, revoked_at=None
        ).update(revoked_at=timezone.now())
        membership.delete()
        audit_record(
            action="membership.removed",
            actor=actor,
            tenant=membership.tenant,
            target=f"user:{membership.user.email or membership.user.username}",
            source_ip=source_ip,
            data={"role": membership.role, "revoked": revoked},
        )
    return revoked


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    """The one-time link of an invitation. Its own salt, so a password-reset link is never an
    invitation; it stops working once used (the hash covers the password and the last login) and
    after PASSWORD_RESET_TIMEOUT seconds (Django's setting; three days by default)."""

    key_salt = "chom.services.InvitationTokenGenerator"


invitation_tokens = InvitationTokenGenerator()


def invitation_url(*, user) -> str:
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    path = reverse("account-welcome", kwargs={"uidb64": uidb64, "token": invitation_tokens.make_token(user)})
    return settings.SITE_URL.rstrip("/") + path


def _invitation_text(membership: Membership) -> tuple[str, str]:
    tenant, user = membership.tenant, membership.user
    if user.has_usable_password():
        return (
            f"You now have access to {tenant.name} on CHOM",
            f"You were added to {tenant.name} ({tenant.slug}) as {membership.role}.\n\n"
            f"Sign in at {settings.SITE_URL.rstrip('/')}{reverse('login')} to create API tokens for it.",
        )
    days = max(1, settings.PASSWORD_RESET_TIMEOUT // 86400)
    return (
        f"Your CHOM account for {tenant.name}",
        f"You were added to {tenant.name} ({tenant.slug}) as {membership.role}.\n\n"
        f"Open this link to set your password, then create your API token:\n\n{invitation_url(user=user)}\n\n"
        f"The link works once and for {days} day(s). If it has expired, ask for a new invitation.",
    )


def invitation_send(*, membership: Membership, actor=None, source_ip=None) -> bool:
    """Email the member a one-time link to set a password (or, to someone who has one already, the
    news). A mail failure is logged and audited, never undoes the membership: resend later."""
    user = membership.user
    subject, body = _invitation_text(membership)
    try:
        send_mail(subject, body, None, [user.email or user.username])
        sent = True
    except OSError:  # smtplib's errors are OSErrors too
        logger.exception("invitation to %s for %s not sent", user.email, membership.tenant.slug)
        sent = False
    audit_record(
        action="membership.invited" if sent else "membership.invitation_failed",
        actor=actor,
        tenant=membership.tenant,
        target=f"user:{user.email or user.username}",
        source_ip=source_ip,
        data={"role": membership.role, "one_time_link": not user.has_usable_password()},
    )
    return sent


def invitation_accept(*, user, password: str, source_ip=None):
    """Set the invited person's password (the link checked beforehand stops working with it)."""
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise ApplicationError(400, "weak_password", " ".join(exc.messages), {"password": exc.messages})
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(
        action="user.password_set",
        actor=user,
        target=f"user:{user.email or user.username}",
        source_ip=source_ip,
        data={"via": "invitation"},
    )
    return user


def staff_token_create(*, email: str) -> IssuedToken:
    user = user_get_or_create(email=email, is_staff=True)
    return token_create(user=user, tenant=None, name="staff token")


@register("system.selfcheck", soft_time_limit=30, time_limit=45, max_attempts=1)
def selfcheck_run(ctx: OperationContext) -> dict:
    """Proves the worker path end to end: broker delivery, DB writes and the step log."""
    ctx.step("database", progress=30)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    ctx.log(f"database {connection.vendor} answered")
    ctx.step("worker", progress=60)
    host = socket.gethostname()
    ctx.log(f"running on worker host {host}")
    return {"worker_host": host, "database": connection.vendor}
