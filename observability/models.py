from django.db import models
from django.utils import timezone


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
    tenant = models.ForeignKey(
        "chom.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

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
