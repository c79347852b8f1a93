from django.db import models
from django.utils import timezone


class Backup(models.Model):
    """One backup of one site: its artefacts in S3 and the manifest that describes them.

    `artefacts` maps an artefact name (database, files, files_index) to {"key", "size", "sha256"}
    as read back from S3. A backup is `succeeded` only when every artefact and the manifest were
    verified in S3; a `failed` backup leaves no object that could look complete.
    """

    class Kind(models.TextChoices):
        FULL = "full"
        DATABASE = "database"
        FILES = "files"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        MANUAL = "manual"
        SCHEDULED = "scheduled"
        PRE_RESTORE = "pre-restore"
        PRE_DELETE = "pre-delete"

    site = models.ForeignKey("sites.Site", on_delete=models.PROTECT, related_name="backups")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FULL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    trigger = models.CharField(max_length=12, choices=Trigger.choices, default=Trigger.MANUAL)
    release = models.CharField(max_length=40, blank=True)
    artefacts = models.JSONField(default=dict, blank=True)
    manifest_key = models.CharField(max_length=500, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verify_error = models.TextField(blank=True)
    # S3 objects deleted by retention; the row stays until pruned with them.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["site", "status", "-created_at"])]

    def __str__(self) -> str:
        return f"backup {self.pk} of {self.site_id} ({self.status})"

    @property
    def prefix(self) -> str:
        return f"sites/{self.site_id}/{self.pk}/"

    @property
    def keys(self) -> list[str]:
        keys = [a["key"] for a in self.artefacts.values() if a.get("key")]
        return keys + ([self.manifest_key] if self.manifest_key else [])

    @property
    def includes_database(self) -> bool:
        return self.kind in (self.Kind.FULL, self.Kind.DATABASE)

    @property
    def includes_files(self) -> bool:
        return self.kind in (self.Kind.FULL, self.Kind.FILES)
