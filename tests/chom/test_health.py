from datetime import timedelta

from django.utils import timezone

from chom.models import WorkerHeartbeat
from chom.workers import heartbeat_write


def test_it_is_healthy_with_database_broker_and_a_live_worker(anon, db):
    heartbeat_write(hostname="w1@test", queues="default,remote")
    response = anon.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "workers": "ok"}}


def test_it_answers_503_naming_the_check_but_not_its_error_to_the_public(anon, db, settings):
    heartbeat_write(hostname="w1@test", queues="default")
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = anon.get("/health")
    assert response.status_code == 503
    assert response.json() == {
        "status": "down",
        "checks": {"database": "ok", "broker": "down", "workers": "ok"},
    }
    assert "127.0.0.1" not in response.content.decode()


def test_it_gives_staff_and_the_metrics_token_the_reason_a_check_is_down(anon, db, settings):
    WorkerHeartbeat.objects.create(hostname="old@test", last_seen=timezone.now() - timedelta(minutes=5))
    settings.METRICS_TOKEN = "scrape-secret"
    public = anon.get("/health")
    assert public.status_code == 503 and "details" not in public.json()
    detailed = anon.get("/health", HTTP_AUTHORIZATION="Bearer scrape-secret").json()
    assert detailed["checks"]["workers"] == "down"
    assert "no worker heartbeat" in detailed["details"]["workers"]


def test_it_gates_metrics_to_allowed_ips_or_the_token(client, db, settings):
    settings.METRICS_ALLOWED_IPS = ["10.9.9.9"]
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 401
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


def test_it_takes_the_client_from_x_forwarded_for_only_behind_a_trusted_proxy(client, db, settings):
    """Behind the documented nginx every peer is 127.0.0.1: the allow-list must see the real client."""
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]
    outsider = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert client.get("/metrics", **outsider).status_code == 401
    # A client cannot claim to be the proxy by writing its own X-Forwarded-For further left.
    forged = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "127.0.0.1, 203.0.113.9"}
    assert client.get("/metrics", **forged).status_code == 401
    # An untrusted peer's X-Forwarded-For is ignored.
    settings.TRUSTED_PROXIES = []
    assert (
        client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 401
    )


def test_it_records_the_real_client_in_the_audit_log(alice, settings):
    from chom.models import AuditEvent

    settings.TRUSTED_PROXIES = ["127.0.0.1/32", "::1/128"]
    alice.client().post(
        "/api/v1/tokens",
        {"name": "ci"},
        format="json",
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    assert AuditEvent.objects.filter(action="token.created").latest("id").source_ip == "198.51.100.7"


def test_production_keeps_metrics_closed_without_the_token():
    from tests.support.production import production_setting

    assert production_setting("METRICS_ALLOWED_IPS") == "[]"
