"""The Celery app. Settings come from Django settings (CELERY_*); schedules from chom/schedules.py."""

import os
from pathlib import Path

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chom.settings.local")

app = Celery("chom")
app.config_from_object("django.conf:settings", namespace="CELERY")
# default: short work; remote: SSH to VPSes; notify: tenants' notification receivers (their own
# worker, so a hung receiver never holds a deploy's worker slot).
app.conf.task_queues = (Queue("default"), Queue("remote"), Queue("notify"))
app.autodiscover_tasks()


def _prepare_embedded_broker() -> None:
    """The filesystem transport (no REDIS_URL) needs its folders before any process uses them."""
    if str(app.conf.broker_url).startswith("filesystem://"):
        for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
            Path(app.conf.broker_transport_options[key]).mkdir(parents=True, exist_ok=True)


def _configure_beat() -> None:
    from chom.schedules import BEAT_SCHEDULE

    app.conf.beat_schedule = BEAT_SCHEDULE


_prepare_embedded_broker()
_configure_beat()
