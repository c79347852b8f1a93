"""Backups switched on (S3_BUCKET set or BACKUPS_ENABLED) but half configured must stop the start."""

from django.conf import settings
from django.core.checks import Error, register

MIN_PART_SIZE = 5 * 1024 * 1024


@register("backups")
def backup_configuration_check(app_configs=None, **kwargs) -> list[Error]:
    if not (settings.BACKUPS_ENABLED or settings.S3_BUCKET):
        return []
    errors = []
    if not settings.S3_BUCKET:
        errors.append(
            Error(
                "BACKUPS_ENABLED is on but S3_BUCKET is not set: backups would fail at their first run.",
                hint="Set S3_BUCKET (and S3_ENDPOINT_URL for a non-AWS endpoint), or unset BACKUPS_ENABLED.",
                id="backups.E001",
            )
        )
    if bool(settings.S3_ACCESS_KEY_ID) != bool(settings.S3_SECRET_ACCESS_KEY):
        errors.append(
            Error(
                "Only one of S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY is set.",
                hint="Set both (or neither, to use the machine's AWS credentials chain).",
                id="backups.E002",
            )
        )
    if settings.S3_ENDPOINT_URL and not settings.S3_ENDPOINT_URL.startswith(("http://", "https://")):
        errors.append(Error("S3_ENDPOINT_URL must be an http(s):// URL.", id="backups.E003"))
    if settings.BACKUP_PART_SIZE < MIN_PART_SIZE:
        errors.append(Error("BACKUP_PART_SIZE is below S3's 5 MiB minimum part size.", id="backups.E004"))
    if settings.S3_SSE not in ("", "AES256", "aws:kms"):
        errors.append(Error("S3_SSE must be AES256, aws:kms or empty.", id="backups.E005"))
    return errors
