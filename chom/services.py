"""Writes of the core: tenants, memberships, API tokens, audit events."""

import hashlib
import hmac
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from chom.models import ApiToken, AuditEvent, Membership, Tenant
from chom.operations import OperationContext, register

TOKEN_PREFIX = "chom"  # noqa: S105 - a public marker, not a secret
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


@transaction.atomic
def tenant_create(*, slug: str, name: str = "", tier: str, owner_email: str) -> tuple[Tenant, IssuedToken]:
    tenant = Tenant.objects.create(slug=slug, name=name or slug, tier=tier)
    owner = user_get_or_create(email=owner_email)
    Membership.objects.create(user=owner, tenant=tenant, role=Membership.Role.OWNER)
    audit_record(
        action="tenant.created",
        actor=owner,
        tenant=tenant,
        target=f"tenant:{slug}",
        data={"tier": tier},
    )
    return tenant, token_create(user=owner, tenant=tenant, name="owner token")


def membership_add(*, tenant: Tenant, email: str, role: str) -> Membership:
    user = user_get_or_create(email=email)
    membership, _ = Membership.objects.update_or_create(user=user, tenant=tenant, defaults={"role": role})
    audit_record(action="membership.set", tenant=tenant, target=f"user:{email}", data={"role": role})
    return membership


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
