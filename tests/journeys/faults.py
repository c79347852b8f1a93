"""What the fault journeys (billing dunning, a changed host key, a killed worker) add to the stack of
tests/journeys/conftest.py: the worker restarted with other settings or SIGKILLed and replaced, a
beat job sent now the way beat sends it, a task run once by an operator's process whose clock is
shifted through a setting, a shared VPS for journeys that do not care which, and step timings.

A journey that touches the worker leaves the stack's own worker (the stack's environment) running
when it ends, whatever happened: the journeys after it share the stack."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery

from tests.journeys.support import Api, Stack, unique
from tests.support.git import git_repo
from tests.support.processes import BIN, ROOT, wait_for


class Steps:
    """Each step's duration, printed with the journey's total at the end."""

    def __init__(self, journey: str):
        self.journey, self.steps = journey, {}
        self._clock = self._start = time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.steps[name], self._clock = now - self._clock, now

    def report(self) -> None:
        print(f"\njourney {self.journey}: {time.monotonic() - self._start:.1f}s")
        for name, seconds in self.steps.items():
            print(f"  {seconds:6.1f}s  {name}")


def shared_vps(stack: Stack) -> dict:
    """An active shared VPS with room: one an earlier journey made, else a new one."""
    staff = stack.staff()
    listed = staff.get("/api/v1/vps")
    for vps in listed.get("results", listed) if isinstance(listed, dict) else listed:
        if vps["kind"] == "shared" and vps["status"] == "active" and not vps.get("cordoned"):
            return staff.get(f"/api/v1/vps/{vps['id']}")
    return stack.create_vps(unique("j-shared"))


def worker_restart(stack: Stack, **settings: str) -> None:
    """Stop the worker as systemd does (TERM, warm shutdown) and start it with SETTINGS on top of
    the stack's environment (none: the stack's own worker again); returns once it is ready."""
    stack.stop("worker")
    env = stack.env
    stack.env = {**env, **settings}
    try:
        stack.start("worker")
    finally:
        stack.env = env
    stack.ready("worker")


@contextmanager
def worker_with(stack: Stack, **settings: str) -> Iterator[None]:
    """The worker runs with SETTINGS for the block; the stack's own worker runs again after it."""
    worker_restart(stack, **settings)
    try:
        yield
    finally:
        worker_restart(stack)


def worker_kill(stack: Stack) -> None:
    """SIGKILL the worker's whole process group (main process and pool children), as the OOM
    killer or a power cut would: no warm shutdown, no task acknowledged or requeued."""
    proc = stack.processes["worker"]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    stack.stop("worker")  # forget the dead process (nothing left to stop)


def beat_send(stack: Stack, task: str, *, queue: str = "default") -> None:
    """Publish TASK on the stack's broker the way beat publishes a due schedule entry."""
    app = Celery("journeys", broker=stack.env["CELERY_BROKER_URL"])
    try:
        app.send_task(task, queue=queue)
    finally:
        app.close()


def task_run_once(stack: Stack, task: str, *, timeout: float = 120, **settings: str) -> str:
    """Run the body of the Celery task TASK once in an operator's process (manage.py shell) with
    SETTINGS on top of the stack's environment; its printed result. A setting is how a journey
    moves this one run's clock (e.g. OPERATION_STALE_GRACE_SECONDS) without touching the stack."""
    code = f"from chom.celery import app; app.loader.import_default_modules(); print(app.tasks[{task!r}]())"
    result = subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**stack.env, **settings},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"task {task}:\n{result.stdout}{result.stderr[-3000:]}"
    return result.stdout.strip()


def deploy_building(
    owner: Api, *, site_id, repo, git_server, url: str, build_seconds: int
) -> tuple[str, str]:
    """Publish "version 2" of the site's repository, give the site a build hook that sleeps
    BUILD_SECONDS and deploy it: (operation id, release name) once the operation builds that
    release, so a fault can land while it does."""
    git_repo(repo, {"index.html": "<h1>version 2</h1>\n"}, "version 2")
    git_server.publish(repo, url.rsplit("/", 1)[1])
    hooks = {"hooks": {"build": ["sleep", str(build_seconds)]}}
    owner.request("PATCH", f"/api/v1/sites/{site_id}", json=hooks, expect=200)
    op_id = owner.post(f"/api/v1/sites/{site_id}/deploy")["operation"]["id"]
    op: dict = {}

    def building() -> bool:
        nonlocal op
        op = owner.get(f"/api/v1/operations/{op_id}")
        assert op["status"] in ("queued", "running"), op
        return op["status"] == "running" and op["step"].startswith("release ")

    try:
        wait_for(building, timeout=180, interval=0.3, what="the build of release 2")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {op}") from None
    return op_id, op["step"].split()[1]
