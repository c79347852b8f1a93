"""What CHOM knows about a tenant's Stripe side. Stripe stays the source of truth: these rows are a
cache refreshed from Stripe, plus the ledger of events received and usage reported."""

from django.db import models
from django.utils import timezone


class BillingAccount(models.Model):
    # Stripe subscription statuses that mean "this subscription is the tenant's plan".
    LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid")
    PAID_STATUSES = ("active", "trialing")
    UNPAID_STATUSES = ("past_due", "unpaid")

    tenant = models.OneToOneField("chom.Tenant", on_delete=models.CASCADE, related_name="billing_account")
    stripe_customer_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    stripe_subscription_id = models.CharField(max_length=100, blank=True)
    stripe_price_id = models.CharField(max_length=100, blank=True)
    subscription_status = models.CharField(max_length=30, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    past_due_since = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.tenant} ({self.stripe_customer_id or 'no customer'})"

    @property
    def has_live_subscription(self) -> bool:
        return bool(self.stripe_subscription_id) and self.subscription_status in self.LIVE_STATUSES


class StripeEvent(models.Model):
    """Every verified webhook, stored by Stripe's event id before anything is applied."""

    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    payload = models.JSONField()
    tenant = models.ForeignKey(
        "chom.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="stripe_events"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED, db_index=True)
    outcome = models.TextField(blank=True)
    deliveries = models.PositiveIntegerField(default=1)
    stripe_created_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} [{self.status}]"


class UsageReport(models.Model):
    """One metered quantity per tenant, day and metric: the row that makes a rerun a no-op."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"

    tenant = models.ForeignKey("chom.Tenant", on_delete=models.CASCADE, related_name="usage_reports")
    day = models.DateField()
    metric = models.CharField(max_length=50)
    quantity = models.DecimalField(max_digits=14, decimal_places=3)
    # Sent as the meter event's `identifier` and as the Idempotency-Key: Stripe dedupes retries too.
    identifier = models.CharField(max_length=100, unique=True)
    stripe_customer_id = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-day", "metric"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "day", "metric"], name="one_usage_report_per_tenant_day"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.day} {self.metric}={self.quantity} [{self.status}]"
