from datetime import timedelta

from django.utils import timezone

from chom.models import WorkerHeartbeat
from chom.workers import heartbeat_write


def test_it_is_healthy_with_database_broker_and_a_live_worker(anon, db):
    heartbeat_write(hostname="w1@test", queues="default,remote")
    response = anon.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "workers": "ok"}}


def test_it_answers_503_naming_an_unreachable_broker(anon, db, settings):
    heartbeat_write(hostname="w1@test", queues="default")
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = anon.get("/health")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["broker"].startswith("down:")
    assert checks["database"] == "ok"


def test_it_answers_503_when_no_worker_has_beaten_recently(anon, db):
    WorkerHeartbeat.objects.create(hostname="old@test", last_seen=timezone.now() - timedelta(minutes=5))
    response = anon.get("/health")
    assert response.status_code == 503
    assert "no worker heartbeat" in response.json()["checks"]["workers"]


def test_it_gates_metrics_to_allowed_ips_or_the_token(client, db, settings):
    settings.METRICS_ALLOWED_IPS = ["10.9.9.9"]
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert response.status_code == 200
    assert b"chom_http_requests_total" in response.content
    assert b"chom_queue_depth" in response.content


def test_it_counts_operations_by_kind_and_status_in_metrics(client, db, settings):
    from chom.operations import operation_create

    operation_create(kind="system.selfcheck")
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'chom_operations{kind="system.selfcheck",status="queued"} 1.0' in body
