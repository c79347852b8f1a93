"""Run web (gunicorn), the Celery workers and Celery beat together, as `make run` does: the
worker of queues default and remote, and the notification worker of queue notify (tenants'
receivers, which may hang, never hold the worker that deploys; deploy/README.md).

Each is a separate process; if one exits the others are stopped, so a half-running stack never
pretends to be up.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

STOP_TIMEOUT = 15


class Command(BaseCommand):
    help = "Run web + worker + beat in the foreground until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--concurrency", default=os.environ.get("WORKER_CONCURRENCY", "2"))
        parser.add_argument("--notify-concurrency", default=os.environ.get("NOTIFY_CONCURRENCY", "2"))

    def handle(self, *args, host, port, concurrency, notify_concurrency, **options):
        bin_dir = Path(sys.executable).parent
        logs = Path(settings.VAR_DIR) / "log"
        logs.mkdir(parents=True, exist_ok=True)
        commands = {
            "web": [
                str(bin_dir / "gunicorn"),
                "chom.wsgi",
                "--bind",
                f"{host}:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--graceful-timeout",
                "20",
                "--access-logfile",
                "-",
                "--logger-class",
                "chom.gunicorn_logging.QuietPollsLogger",
            ],
            "worker": [
                str(bin_dir / "celery"),
                "-A",
                "chom",
                "worker",
                "-Q",
                "default,remote",
                "--concurrency",
                concurrency,
                "--loglevel",
                "INFO",
                "-n",
                f"worker-{port}@%h",
            ],
            "notify": [
                str(bin_dir / "celery"),
                "-A",
                "chom",
                "worker",
                "-Q",
                "notify",
                "--concurrency",
                notify_concurrency,
                "--loglevel",
                "INFO",
                "-n",
                f"notify-{port}@%h",
            ],
            "beat": [
                str(bin_dir / "celery"),
                "-A",
                "chom",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(Path(settings.VAR_DIR) / "celerybeat-schedule"),
            ],
        }
        env = os.environ.copy()
        # gunicorn runs several workers: their metric counters meet in files (chom/metrics.py).
        metrics_dir = Path(settings.VAR_DIR) / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        procs = {name: subprocess.Popen(argv, env=env) for name, argv in commands.items()}
        self.stdout.write(f"CHOM is starting on http://{host}:{port}/ (dashboard, /api/v1/, /health)")
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            dead = [name for name, p in procs.items() if p.poll() is not None]
            if dead:
                self.stderr.write(f"{', '.join(dead)} exited; stopping the stack")
                exit_code = 1
                break
            time.sleep(0.5)
        self._stop_all(procs)
        sys.exit(exit_code)

    def _stop_all(self, procs) -> None:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for p in procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
