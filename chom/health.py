"""Health of CHOM itself: database, broker and workers, each with a short timeout."""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.utils import timezone

from chom.models import WorkerHeartbeat


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_broker() -> str:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".health"
        probe.write_text("ok")
        probe.unlink()
        return "ok"
    import redis

    client = redis.Redis.from_url(
        url,
        socket_timeout=settings.HEALTH_CHECK_TIMEOUT,
        socket_connect_timeout=settings.HEALTH_CHECK_TIMEOUT,
    )
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def check_workers() -> str:
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)
    alive = WorkerHeartbeat.objects.filter(last_seen__gte=cutoff).count()
    if not alive:
        raise RuntimeError(f"no worker heartbeat in the last {settings.WORKER_STALE_SECONDS}s")
    return "ok"


CHECKS = {"database": check_database, "broker": check_broker, "workers": check_workers}


def health_report() -> tuple[bool, dict[str, str]]:
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means "down", with its reason
            results[name] = f"down: {exc}"[:300]
    return all(v == "ok" for v in results.values()), results
