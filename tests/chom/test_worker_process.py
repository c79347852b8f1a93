"""A real Celery worker process picks up Operations through the configured broker
(the filesystem transport without REDIS_URL, Redis in CI) and records its heartbeat."""

import pytest
from django.db import transaction

from chom.models import Operation, WorkerHeartbeat
from chom.operations import operation_create
from tests.support.processes import celery_worker_argv, running, wait_for, worker_env


@pytest.mark.django_db(transaction=True)
def test_it_runs_an_operation_in_a_separate_worker_process(tmp_path):
    with running(celery_worker_argv("test-worker"), env=worker_env(), log=tmp_path / "worker.log"):
        with transaction.atomic():
            op = operation_create(kind="system.selfcheck")
        try:
            wait_for(lambda: Operation.objects.get(id=op.id).is_final, timeout=60, what="operation to finish")
            wait_for(WorkerHeartbeat.objects.exists, timeout=15, what="worker heartbeat")
        except TimeoutError:
            pytest.fail((tmp_path / "worker.log").read_text()[-3000:])
    op.refresh_from_db()
    assert op.status == "succeeded", op.error
    assert op.result["worker_host"]
    assert [e.message for e in op.log_entries.all()][-1] == "succeeded"
