"""CHOM's own Prometheus metrics: HTTP requests, operations by kind/status, queue depth."""

import os
import time
from pathlib import Path

from django.conf import settings
from django.db.models import Count
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter(
    "chom_http_requests_total", "HTTP requests served", ["method", "status"], registry=REGISTRY
)
HTTP_LATENCY = Histogram("chom_http_request_seconds", "HTTP request latency", ["method"], registry=REGISTRY)


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        HTTP_REQUESTS.labels(request.method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(request.method).observe(time.perf_counter() - started)
        return response


def queue_depths() -> dict[str, int]:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        total = len(list(folder.glob("*.msg"))) if folder.exists() else 0
        return {"all": total}
    import redis

    client = redis.Redis.from_url(url, socket_timeout=settings.HEALTH_CHECK_TIMEOUT)
    try:
        return {q: int(client.llen(q)) for q in ("default", "remote", "notify")}
    finally:
        client.close()


class DatabaseCollector:
    """Read at scrape time, so the numbers are those of the database, not of one process."""

    def describe(self):
        return []  # no query at registration time (the tables may not exist yet)

    def collect(self):
        from chom.models import Operation

        ops = GaugeMetricFamily("chom_operations", "Operations by kind and status", labels=["kind", "status"])
        for row in Operation.objects.values("kind", "status").annotate(n=Count("id")):
            ops.add_metric([row["kind"], row["status"]], row["n"])
        yield ops
        depth = GaugeMetricFamily("chom_queue_depth", "Messages waiting in the broker", labels=["queue"])
        try:
            for queue, n in queue_depths().items():
                depth.add_metric([queue], n)
        except Exception:  # noqa: BLE001, S110 - an unreachable broker shows as a missing series
            pass
        yield depth


# Computed from the database (or the broker) at scrape time: the same whichever process answers.
SCRAPE_REGISTRY = CollectorRegistry(auto_describe=True)
SCRAPE_REGISTRY.register(DatabaseCollector())


def render() -> bytes:
    """Per-process counters plus the scrape-time collectors. With several web processes
    (gunicorn workers) each keeps its own counters; with PROMETHEUS_MULTIPROC_DIR set they write
    them to files there and a scrape sums them all."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        per_process = CollectorRegistry()
        multiprocess.MultiProcessCollector(per_process)
    else:
        per_process = REGISTRY
    return generate_latest(per_process) + generate_latest(SCRAPE_REGISTRY)
