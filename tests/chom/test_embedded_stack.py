"""The `make run` path on a machine with nothing installed: SQLite + the filesystem broker,
web + worker + notification worker + beat as separate processes, answering /health and the API."""

import json
import os
import subprocess
import sys
import urllib.request

from tests.support.processes import ROOT, free_port, running, wait_for

SELFCHECK = """
import time
from django.db import transaction
from chom.operations import operation_create
with transaction.atomic():
    op = operation_create(kind="system.selfcheck")
for _ in range(150):
    op.refresh_from_db()
    if op.is_final:
        break
    time.sleep(0.2)
print(op.status)
"""

HEARTBEAT_QUEUES = """
from chom.models import WorkerHeartbeat
print(sorted(WorkerHeartbeat.objects.values_list("queues", flat=True)))
"""


def _embedded_env(var_dir) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"} and not k.startswith("PYTEST_")
    }
    env.update({"DJANGO_SETTINGS_MODULE": "chom.settings.local", "CHOM_VAR_DIR": str(var_dir)})
    return env


def _manage(env, *args) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _get(url: str, token: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read())
    except OSError:
        return None, None


def test_it_runs_web_worker_and_beat_on_sqlite_with_the_embedded_broker(tmp_path):
    env = _embedded_env(tmp_path)
    _manage(env, "migrate", "--noinput")
    assert "password" in _manage(env, "ensure_staff_login")
    assert "already exists" in _manage(env, "ensure_staff_login")
    port = free_port()
    argv = [sys.executable, "manage.py", "run_stack", "--port", str(port)]
    with running(argv, env=env, log=tmp_path / "stack.log"):
        try:
            wait_for(
                lambda: _get(f"http://127.0.0.1:{port}/health")[0] == 200, timeout=60, what="/health 200"
            )
        except TimeoutError:
            raise AssertionError((tmp_path / "stack.log").read_text()[-3000:])
        status, body = _get(f"http://127.0.0.1:{port}/health")
        assert body["checks"] == {"database": "ok", "broker": "ok", "workers": "ok"}

        token = _manage(env, "create_tenant", "smoke", "--tier", "pro", "--owner-email", "o@smoke.test")
        token = token.strip().splitlines()[-1]
        status, tenant = _get(f"http://127.0.0.1:{port}/api/v1/tenant", token)
        assert (status, tenant["slug"], tenant["tier"]) == (200, "smoke", "pro")

        assert _manage(env, "shell", "-c", SELFCHECK).strip().splitlines()[-1] == "succeeded"
        # Notifications have a worker of their own (queue notify), next to the one that deploys.
        both = "['default,remote', 'notify']"
        consumers = lambda: _manage(env, "shell", "-c", HEARTBEAT_QUEUES).strip().splitlines()[-1]  # noqa: E731
        wait_for(lambda: consumers() == both, timeout=30, what=f"workers consuming {both}")

        # Two gunicorn workers answer; /metrics sums both workers' counters.
        for _ in range(8):
            _get(f"http://127.0.0.1:{port}/health")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        served = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('chom_http_requests_total{method="GET",status="200"}')
        )
        assert served >= 9  # the 8 above plus the readiness probe that saw 200
        assert 'chom_operations{kind="system.selfcheck",status="succeeded"} 1.0' in metrics
    assert (tmp_path / "chom.sqlite3").exists()
