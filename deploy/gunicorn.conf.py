"""Gunicorn settings for CHOM's web process: the systemd unit and deploy.sh's local mode use it.

It is always loaded through the `current` symlink (`-c /srv/chom/current/deploy/gunicorn.conf.py`)
and pins the process to the release `current` pointed at when it was read. A graceful reload
(deploy/bin/chom-web-reload: USR2, then TERM to the old master) re-executes the master with the
same command line, so the new master reads this file again through the new `current`: new code,
new virtualenv, same listening sockets.
"""

import os
import sys

RELEASE = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

# The interpreter was started as <root>/current/venv/bin/python, so sys.path goes through the
# symlink. Resolve it now: a module imported lazily after the next switch must still come from
# this release, never from the one deployed after it.
sys.path[:] = [os.path.realpath(p) if os.path.isabs(p) else p for p in sys.path]
chdir = RELEASE
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chom.settings.production")
# Static files are collected per release, so a rollback serves its own manifest.
os.environ.setdefault("STATIC_ROOT", os.path.join(RELEASE, "static"))

wsgi_app = "chom.wsgi:application"
bind = os.environ.get("CHOM_BIND", "127.0.0.1:8000").split(",")
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 60
# In-flight requests get this long to finish when a master retires (reload, stop).
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "30"))
keepalive = 2
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = "-"
errorlog = "-"
proc_name = "chom-web"


def when_ready(server) -> None:
    """A re-executed master tells systemd it is the service's main process now (NotifyAccess=all),
    so the unit survives the old master's exit."""
    if server.master_pid and os.environ.get("NOTIFY_SOCKET"):
        from gunicorn import systemd

        systemd.sd_notify(f"MAINPID={os.getpid()}", server.log)


def post_worker_init(worker) -> None:
    """Mark '<pidfile>.ready.<master pid>' once a worker has loaded the application: the reload
    script retires the old master only after the new one can serve."""
    if worker.cfg.pidfile:
        with open(f"{worker.cfg.pidfile}.ready.{worker.ppid}", "w") as marker:
            marker.write(RELEASE + "\n")


def child_exit(server, worker) -> None:
    """Per-process metric files of a worker that is gone stop counting as live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
