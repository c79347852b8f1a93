"""Every periodic job, in one place. django-celery-beat copies these into the database at start,
where admins can see them (and pause or re-time them) in the Django admin."""

BEAT_SCHEDULE: dict[str, dict] = {
    "reclaim-stale-operations": {
        "task": "chom.reclaim_stale_operations",
        "schedule": 60.0,
        "options": {"queue": "default", "expires": 55},
    },
}
