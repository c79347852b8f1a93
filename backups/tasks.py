"""Thin Celery tasks for the beat schedules: each calls one service."""

from celery import shared_task

from backups import control_plane, restore, services, storage


@shared_task(name="backups.schedule_due", ignore_result=True)
def schedule_due() -> int:
    return len(services.backups_schedule_due())


@shared_task(name="backups.prune", ignore_result=True)
def prune() -> int:
    return len(services.backups_prune()) if storage.configured() else 0


@shared_task(name="backups.restore_drills", ignore_result=True)
def restore_drills() -> int:
    return len(restore.backups_drill_all()) if storage.configured() else 0


@shared_task(name="backups.daily_report", ignore_result=True)
def daily_report() -> int:
    return services.backups_daily_report()


@shared_task(
    name="backups.control_plane", ignore_result=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 60
)
def control_plane_backup() -> str:
    if not storage.configured():
        return ""
    key = control_plane.control_plane_backup().key
    control_plane.control_plane_prune()
    return key
