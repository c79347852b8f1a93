"""Cross-cutting core: tenants, memberships, API tokens, audit events and Operations."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chom.tiers import STARTER, TIER_CHOICES, limits_for


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        PAST_DUE = "past_due"
        SUSPENDED = "suspended"

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    tier = models.CharField(max_length=20, choices=TIER_CHOICES, default=STARTER)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    # Why staff suspended the tenant. Empty otherwise, also when billing suspended it (unpaid):
    # that suspension is billing's to lift when the invoice is paid.
    suspension_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.slug

    @property
    def limits(self):
        return limits_for(self.tier)

    @property
    def may_be_suspended_by_staff(self) -> bool:
        """Only an active tenant: a past-due one is billing's (it suspends after the grace period)."""
        return self.status == self.Status.ACTIVE

    @property
    def suspended_by_staff(self) -> bool:
        return self.status == self.Status.SUSPENDED and bool(self.suspension_reason)


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"
        VIEWER = "viewer"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="one_membership_per_tenant")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"

    @property
    def can_write(self) -> bool:
        return self.role != self.Role.VIEWER

    @property
    def can_manage_tokens(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN, self.Role.MEMBER)


class ApiToken(models.Model):
    """A bearer token. Only a SHA-256 of the secret part is stored; the prefix identifies it."""

    class Scope(models.TextChoices):
        READ = "read"
        WRITE = "write"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    # Null for a platform (staff) token; otherwise the tenant the token acts for.
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.WRITE)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_staff_token(self) -> bool:
        return self.tenant_id is None

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class AuditEvent(models.Model):
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=200, blank=True)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    action = models.CharField(max_length=100)
    target = models.CharField(max_length=200, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"


class Operation(models.Model):
    """The row behind every long action. Created queued, claimed once, finished exactly once."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="operations"
    )
    kind = models.CharField(max_length=60)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    # Mutating operations hold their target exclusively while running (see the constraint).
    mutating = models.BooleanField(default=True)
    # Asked for by the tenant itself (API): counts against its tier's max_pending_operations.
    # Work the platform starts (renewals, scheduled backups, suspensions, staff) never does.
    requested_by_tenant = models.BooleanField(default=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    step = models.CharField(max_length=200, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Past this moment a `running` row has outlived its hard time limit: its worker is gone.
    deadline_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["target_type", "target_id"],
                # Operations without a target (e.g. a self-check) exclude nothing.
                condition=Q(status="running", mutating=True) & ~Q(target_id=""),
                name="one_running_mutation_per_target",
            )
        ]
        indexes = [models.Index(fields=["target_type", "target_id", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} [{self.status}]"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL


class OperationLogEntry(models.Model):
    """Append-only: one row per log line, so concurrent writers never overwrite each other."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="log_entries")
    created_at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=8, default="info")
    message = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.message


class WorkerHeartbeat(models.Model):
    """Each Celery worker writes here every few seconds; /health reads it."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.CharField(max_length=200, blank=True)
    last_seen = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.hostname
