"""Backup policy per tier. Retention days come from chom/tiers.py (the one table of tier limits);
frequency and storage quota live here until chom/tiers.py carries them too."""

from dataclasses import dataclass
from datetime import timedelta

from chom.tiers import ENTERPRISE, PRO, STARTER, limits_for

GIB = 1024**3


@dataclass(frozen=True)
class BackupPolicy:
    frequency: timedelta
    retention_days: int
    storage_quota_bytes: int


_EXTRA = {
    STARTER: {"frequency": timedelta(days=1), "storage_quota_bytes": 10 * GIB},
    PRO: {"frequency": timedelta(days=1), "storage_quota_bytes": 100 * GIB},
    ENTERPRISE: {"frequency": timedelta(days=1), "storage_quota_bytes": 1000 * GIB},
}


def policy_for(tier: str) -> BackupPolicy:
    return BackupPolicy(retention_days=limits_for(tier).backup_retention_days, **_EXTRA[tier])
