"""Start real CHOM processes (worker, web) for tests, always cleaned up, with bounded waits."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

from devstack.processes import free_port  # noqa: F401 - re-exported to the tests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def database_url_of_test_db() -> str:
    """The URL of the database the test process is using right now (the test database)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER'] or ''}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def wait_for(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.2, what: str = "condition"
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s")


def stop_process(proc: subprocess.Popen, *, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


@contextmanager
def running(argv: list[str], *, env: dict[str, str], log: Path):
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop_process(proc)


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chom.settings.test",
            "DATABASE_URL": database_url_of_test_db(),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def celery_worker_argv(name: str, queues: str = "default,remote") -> list[str]:
    """CHOM's worker as production starts it; QUEUES="notify" for the notification worker."""
    return [
        str(BIN / "celery"), "-A", "chom", "worker", "-Q", queues, "--concurrency", "1",
        "--loglevel", "INFO", "-n", f"{name}@%h", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
