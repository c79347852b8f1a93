"""Every periodic job, in one place. django-celery-beat copies these into the database at start,
where admins can see them (and pause or re-time them) in the Django admin."""

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict] = {
    "reclaim-stale-operations": {
        "task": "chom.reclaim_stale_operations",
        "schedule": 60.0,
        "options": {"queue": "default", "expires": 55},
    },
    "fleet-health": {
        "task": "fleet.health_check",
        "schedule": 60.0,
        "options": {"queue": "remote", "expires": 55},
    },
    "sites-renew-certificates": {
        "task": "sites.renew_certificates",
        "schedule": crontab(hour=3, minute=17),
        "options": {"queue": "default"},
    },
    # Automatic TLS: due sites' DNS checked, certificates queued once their names point at the VPS.
    "sites-tls-check-dns": {
        "task": "sites.tls_check_dns",
        "schedule": 60.0,
        "options": {"queue": "default", "expires": 55},
    },
    "fleet-capacity": {
        "task": "fleet.capacity_check",
        "schedule": 300.0,
        "options": {"queue": "default", "expires": 290},
    },
    # Suspends tenants still unpaid after BILLING_GRACE_DAYS (re-checks Stripe first).
    "billing-dunning-enforce": {
        "task": "billing.dunning_enforce",
        "schedule": 3600.0,
        "options": {"queue": "default", "expires": 3000},
    },
    # Daily usage to Stripe meters; a second run the same day sends nothing new.
    "billing-usage-report": {
        "task": "billing.usage_report_daily",
        "schedule": 86400.0,
        "options": {"queue": "default", "expires": 3600},
    },
    # Retries alert and channel notifications that failed (new ones are sent right away); on the
    # notify queue, with the sends of the events themselves.
    "observability-deliver-notifications": {
        "task": "observability.deliver_notifications",
        "schedule": 60.0,
        "options": {"queue": "notify", "expires": 55},
    },
    # file_sd for Prometheus setups that prefer files (no-op unless PROMETHEUS_FILE_SD_PATH is set).
    "observability-write-sd-file": {
        "task": "observability.write_sd_file",
        "schedule": 30.0,
        "options": {"queue": "default", "expires": 25},
    },
    # Grafana folders and dashboards per tenant, VPS and site (no-op unless GRAFANA_URL is set).
    "observability-grafana-sync": {
        "task": "observability.grafana_sync",
        "schedule": 600.0,
        "options": {"queue": "default", "expires": 590},
    },
    # Backups: due sites are queued in their own slot of the night window (bounded per VPS).
    "backups-schedule": {
        "task": "backups.schedule_due",
        "schedule": 300.0,
        "options": {"queue": "default", "expires": 290},
    },
    "backups-prune": {
        "task": "backups.prune",
        "schedule": crontab(hour=6, minute=41),
        "options": {"queue": "default"},
    },
    "backups-restore-drills": {
        "task": "backups.restore_drills",
        "schedule": crontab(day_of_week=0, hour=9, minute=7),
        "options": {"queue": "default"},
    },
    "backups-daily-report": {
        "task": "backups.daily_report",
        "schedule": crontab(hour=7, minute=30),
        "options": {"queue": "default"},
    },
    "backups-control-plane": {
        "task": "backups.control_plane",
        "schedule": crontab(hour="*/6", minute=23),
        "options": {"queue": "default"},
    },
}
