"""The one table of tier limits. Billing maps tiers to Stripe prices; everything else reads here."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TierLimits:
    max_sites: int
    backup_retention_days: int
    site_types: tuple[str, ...]
    dedicated_vps: bool
    api_rate_per_minute: int
    # Operations the tenant itself asked for that may wait or run at once (deploys, backups,
    # restores, TLS, ...); one more is refused with 429. Platform-started work is never counted.
    max_pending_operations: int
    # Per-site resource limits on the VPS (systemd slice of the site user: builds, PHP-FPM pool,
    # workers). CPU in percent of one core; disk in MiB (quota where the filesystem allows).
    site_memory_max_mb: int
    site_cpu_quota_percent: int
    site_tasks_max: int
    site_disk_quota_mb: int
    # The largest release archive a tenant may upload (POST /api/v1/sites/{id}/releases).
    upload_max_mb: int
    # Runtime controls (issue 17): cron jobs per site, worker processes per site (all workers
    # together), whether a site may claim a wildcard name (*.example.com, DNS-01), and the
    # ceilings of the PHP settings a site may set.
    cron_jobs_max: int
    worker_processes_max: int
    wildcard_domains: bool
    php_memory_limit_max_mb: int
    php_upload_max_mb: int
    php_max_execution_time_max: int
    php_max_input_vars_max: int

    def as_dict(self) -> dict:
        data = asdict(self)
        data["site_types"] = list(self.site_types)
        return data


STARTER = "starter"
PRO = "pro"
ENTERPRISE = "enterprise"

TIERS: dict[str, TierLimits] = {
    STARTER: TierLimits(
        max_sites=3,
        backup_retention_days=7,
        site_types=("static", "php", "wordpress"),
        dedicated_vps=False,
        api_rate_per_minute=60,
        max_pending_operations=10,
        site_memory_max_mb=512,
        site_cpu_quota_percent=50,
        site_tasks_max=256,
        site_disk_quota_mb=2048,
        upload_max_mb=100,
        cron_jobs_max=5,
        worker_processes_max=1,
        wildcard_domains=False,
        php_memory_limit_max_mb=256,
        php_upload_max_mb=64,
        php_max_execution_time_max=120,
        php_max_input_vars_max=5000,
    ),
    PRO: TierLimits(
        max_sites=25,
        backup_retention_days=30,
        site_types=("static", "php", "laravel", "wordpress"),
        dedicated_vps=False,
        api_rate_per_minute=300,
        max_pending_operations=40,
        site_memory_max_mb=1024,
        site_cpu_quota_percent=100,
        site_tasks_max=512,
        site_disk_quota_mb=10240,
        upload_max_mb=500,
        cron_jobs_max=20,
        worker_processes_max=4,
        wildcard_domains=True,
        php_memory_limit_max_mb=512,
        php_upload_max_mb=256,
        php_max_execution_time_max=300,
        php_max_input_vars_max=10000,
    ),
    ENTERPRISE: TierLimits(
        max_sites=250,
        backup_retention_days=90,
        site_types=("static", "php", "laravel", "wordpress"),
        dedicated_vps=True,
        api_rate_per_minute=1200,
        max_pending_operations=200,
        site_memory_max_mb=2048,
        site_cpu_quota_percent=200,
        site_tasks_max=1024,
        site_disk_quota_mb=51200,
        upload_max_mb=2048,
        cron_jobs_max=100,
        worker_processes_max=16,
        wildcard_domains=True,
        php_memory_limit_max_mb=1024,
        php_upload_max_mb=1024,
        php_max_execution_time_max=600,
        php_max_input_vars_max=20000,
    ),
}
TIER_CHOICES = [(STARTER, "Starter"), (PRO, "Pro"), (ENTERPRISE, "Enterprise")]
STAFF_API_RATE_PER_MINUTE = 1200


def limits_for(tier: str) -> TierLimits:
    return TIERS[tier]


# The two questions asked of a count against its limit, in one place so that they cannot drift
# apart ("may one more be added?" at max - 1 only; "is the tenant over?" only past max).


def may_add(*, count: int, limit: int) -> bool:
    """One more fits: COUNT in use, LIMIT allowed."""
    return count + 1 <= limit


def is_over(*, count: int, limit: int) -> bool:
    """Beyond the limit (after a downgrade): nothing is deleted, but nothing new is added."""
    return count > limit
