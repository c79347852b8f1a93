"""Worker liveness: each worker process writes a heartbeat row that /health reads.

A thread in the worker's main process does it, so a worker busy with long SSH work still shows
as alive, and one that is gone stops updating within WORKER_HEARTBEAT_SECONDS.
"""

import socket
import threading

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from chom.models import WorkerHeartbeat

_stop = threading.Event()


def heartbeat_write(*, hostname: str, queues: str) -> None:
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"last_seen": timezone.now(), "queues": queues}
    )


def _beat_forever(hostname: str, queues: str) -> None:
    while not _stop.is_set():
        try:
            close_old_connections()
            heartbeat_write(hostname=hostname, queues=queues)
        except Exception:  # noqa: BLE001, S110 - a missed beat is what /health reports
            pass
        finally:
            connection.close()
        _stop.wait(settings.WORKER_HEARTBEAT_SECONDS)


@worker_ready.connect
def _on_worker_ready(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    queues = ",".join(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else ""
    threading.Thread(
        target=_beat_forever, args=(hostname, queues), daemon=True, name="chom-heartbeat"
    ).start()


@worker_shutdown.connect
def _on_worker_shutdown(sender=None, **kwargs) -> None:
    _stop.set()
    hostname = getattr(sender, "hostname", None)
    if hostname:
        WorkerHeartbeat.objects.filter(hostname=hostname).delete()
