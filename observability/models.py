from django.conf import settings
from django.db import models
from django.utils import timezone

from chom.crypto import EncryptedTextField


class Alert(models.Model):
    """An alert CHOM knows about, raised by CHOM itself or received from Alertmanager.
    Deduplicated by fingerprint: one row per ongoing problem."""

    class Status(models.TextChoices):
        FIRING = "firing"
        RESOLVED = "resolved"

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    fingerprint = models.CharField(max_length=200, db_index=True)
    name = models.CharField(max_length=100)
    source = models.CharField(max_length=30, default="chom")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.FIRING, db_index=True)
    summary = models.TextField()
    labels = models.JSONField(default=dict, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    tenant = models.ForeignKey(
        "chom.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    site = models.ForeignKey(
        "sites.Site", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Someone has seen it and is on it; a new occurrence (a new firing row) starts unacknowledged.
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=models.Q(status="firing"),
                name="one_firing_alert_per_fingerprint",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.status}]"

    @property
    def is_firing(self) -> bool:
        return self.status == self.Status.FIRING

    @property
    def is_silenceable(self) -> bool:
        """Only what Alertmanager sent can be muted there; CHOM's own alerts never pass through it."""
        return self.source == "alertmanager" and bool(self.labels)


class Notification(models.Model):
    """One message about one alert transition to one recipient; unique, so a re-sent webhook
    never notifies twice. Webhook URLs are secrets: only their hash is stored."""

    class Event(models.TextChoices):
        FIRING = "firing"
        RESOLVED = "resolved"

    class Channel(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=10, choices=Event.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    recipient = models.CharField(max_length=254, help_text="an email address, or sha256 of a webhook URL")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "event", "channel", "recipient"], name="one_notification_per_recipient"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} for {self.alert_id} [{self.status}]"


class LogShippingCredential(models.Model):
    """What Promtail on one VPS authenticates its log pushes to CHOM with. The secret is encrypted
    rather than hashed: bootstrap renders the same Promtail config from it every time, so a second
    run changes nothing."""

    vps = models.OneToOneField("fleet.Vps", on_delete=models.CASCADE, related_name="+")
    secret = EncryptedTextField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"log shipping for VPS {self.vps_id}"

    @property
    def token(self) -> str:
        """The bearer token: the VPS id to look the row up by, then the secret to compare."""
        return f"{self.vps_id}.{self.secret}"
