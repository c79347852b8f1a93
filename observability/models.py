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


class NotificationChannel(models.Model):
    """Where a tenant wants to hear about events on their sites: an email address, a Slack-compatible
    incoming webhook or a generic webhook signed with a per-channel secret. The address or URL and
    the secret are encrypted at rest (a Slack URL is itself a credential)."""

    class Kind(models.TextChoices):
        EMAIL = "email"
        SLACK = "slack"
        WEBHOOK = "webhook"

    tenant = models.ForeignKey("chom.Tenant", on_delete=models.CASCADE, related_name="notification_channels")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    target = EncryptedTextField(help_text="the email address or the URL")
    secret = EncryptedTextField(blank=True, help_text="the generic webhook's signing secret")
    events = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"

    def wants(self, event: str) -> bool:
        return event in self.events

    @property
    def target_display(self) -> str:
        """What the API shows: the address, or a URL's scheme and host only (its path is the secret)."""
        if self.kind == self.Kind.EMAIL:
            return self.target
        scheme, _, rest = self.target.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}/…"


class ChannelDelivery(models.Model):
    """One event sent to one channel: claimed before its I/O, retried, its last error kept."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=30)
    site = models.CharField(max_length=253, blank=True, help_text="the site's domain")
    message = models.TextField()
    occurred_at = models.DateTimeField(default=timezone.now)
    is_test = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event} to channel {self.channel_id} [{self.status}]"

    @property
    def payload(self) -> dict:
        return {
            "event": self.event,
            "site": self.site or None,
            "message": self.message,
            "occurred_at": self.occurred_at.isoformat().replace("+00:00", "Z"),
        }
