"""Thin Celery tasks for observability's beat jobs and notification delivery (the two delivery
tasks run on the `notify` queue: CELERY_TASK_ROUTES in settings)."""

from pathlib import Path

from celery import shared_task
from django.conf import settings

from observability import dashboards, notifications, services, targets


@shared_task(
    name="observability.deliver_notifications", ignore_result=True, soft_time_limit=120, time_limit=150
)
def deliver_notifications() -> dict[str, dict[str, int]]:
    return {"alerts": services.notifications_deliver(), "channels": notifications.channel_deliveries_send()}


# One event's deliveries: one batch, sent at once within notifications.send_deadline() (~9 s).
@shared_task(
    name="observability.send_channel_deliveries", ignore_result=True, soft_time_limit=45, time_limit=60
)
def send_channel_deliveries(delivery_ids: list[int]) -> dict[str, int]:
    return notifications.channel_deliveries_send(ids=delivery_ids)


@shared_task(name="observability.write_sd_file", ignore_result=True)
def write_sd_file() -> bool:
    if not settings.PROMETHEUS_FILE_SD_PATH:
        return False
    return targets.sd_file_write(Path(settings.PROMETHEUS_FILE_SD_PATH))


@shared_task(name="observability.grafana_sync", ignore_result=True, soft_time_limit=240, time_limit=300)
def grafana_sync() -> int:
    if not settings.GRAFANA_URL:
        return 0
    return len(dashboards.grafana_sync().changed)
