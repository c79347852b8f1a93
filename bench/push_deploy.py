#!/usr/bin/env python
"""Push-to-deploy speed on the local test fleet: from a signed GitHub push webhook being received to
the new commit being served by the VPS. Needs root and the fleet image
(`python -m fleet.localfleet image`).

Boots one real local VPS (systemd-nspawn, Debian 12) on its own bridge, serves a static site's
repository from a `git daemon` on the bridge's gateway, and starts a real Celery worker process
(`celery -A chom worker`, as `make run` does: SQLite + the embedded filesystem broker under a
throwaway var dir). Each run: a new commit reaches the forge (objects pushed, then the branch moved
atomically), then the clock starts and the webhook is POSTed to CHOM's real view
(`/webhooks/git/<hook>`, in-process through Django's test client: no HTTP server in front); the
worker picks the deploy up from the broker and runs it; the page is polled from outside the VPS
every 10 ms with the site's `Host:` header until it shows the new commit. Prints median, min and
max over `--runs`, and where the time went per the operation log's entries.
"""

import argparse
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="chom-bench-push-"))
SUBNET = "10.251.252"
for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
    os.environ.pop(name, None)
os.environ.update(
    DJANGO_SETTINGS_MODULE="chom.settings.local",
    CHOM_VAR_DIR=str(WORK),
    CHOM_LOCAL_PROVIDER="1",
    LOCAL_FLEET_DIR=str(WORK / "fleet"),
    LOCAL_FLEET_BRIDGE="chompush",
    LOCAL_FLEET_SUBNET=SUBNET,
    REPOSITORY_ALLOWED_NETWORKS=f"{SUBNET}.0/24",  # the git daemon listens on the gateway
    DEBUG="0",
)

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from chom.models import Operation, WorkerHeartbeat  # noqa: E402
from chom.operations import operation_execute  # noqa: E402
from chom.services import tenant_create  # noqa: E402
from fleet import localfleet, services  # noqa: E402

DOMAIN = "push.bench"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@b", "PATH": "/usr/bin:/bin",
}  # fmt: skip


def git(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *argv], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def free_port(host: str) -> int:
    from devstack.processes import free_port as port

    return port(host)


def wait(predicate, *, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"{what}: not within {timeout}s")


class Forge:
    """A working copy, and the bare repository a git daemon serves to the VPS."""

    def __init__(self, host: str):
        self.work, self.bare = WORK / "work", WORK / "srv" / "site.git"
        self.work.mkdir()
        self.bare.parent.mkdir()
        git("init", "-q", "-b", "main", str(self.work))
        self.head = self.commit("first")
        git("clone", "-q", "--bare", str(self.work), str(self.bare))
        self.port = free_port(host)
        self.url = f"git://{host}:{self.port}/site.git"
        self.daemon = subprocess.Popen(
            ["git", "daemon", f"--base-path={self.bare.parent}", "--export-all", "--reuseaddr",
             f"--listen={host}", f"--port={self.port}", str(self.bare.parent)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        time.sleep(0.5)

    def commit(self, text: str) -> str:
        page = self.work / "public" / "index.html"
        page.parent.mkdir(exist_ok=True)
        page.write_text(f"<h1>{text}</h1>\n")
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", text, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def publish(self, sha: str) -> bytes:
        """The push lands at the forge; returns the webhook body GitHub would send for it."""
        git("push", "-q", "-f", str(self.bare), f"{sha}:refs/staging/{sha}", cwd=self.work)
        git(f"--git-dir={self.bare}", "update-ref", "refs/heads/main", sha)
        before, self.head = self.head, sha
        return json.dumps({"ref": "refs/heads/main", "before": before, "after": sha}).encode()

    def stop(self) -> None:
        self.daemon.terminate()
        self.daemon.wait(timeout=10)


def start_worker() -> subprocess.Popen:
    log = open(WORK / "worker.log", "wb")  # noqa: SIM115 - closed with the process
    argv = [
        str(Path(sys.executable).parent / "celery"), "-A", "chom", "worker", "-Q", "default,remote",
        "--concurrency", "1", "--loglevel", "INFO", "-n", "bench-push@%h", "--without-mingle",
        "--without-gossip",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait(WorkerHeartbeat.objects.exists, timeout=60, what="worker start")
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=5)


def finished(op_id) -> Operation:
    op = wait(
        lambda: (o := Operation.objects.get(id=op_id)).is_final and o, timeout=300, what=f"operation {op_id}"
    )
    if op.status != "succeeded":
        raise SystemExit(
            f"operation {op.kind} failed: {op.error}\n{(WORK / 'worker.log').read_text()[-3000:]}"
        )
    return op


def served(ip: str, needle: str, timeout: float = 60) -> float:
    """Poll every 10 ms; the monotonic time the page first showed NEEDLE."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if needle in requests.get(f"http://{ip}/", headers={"Host": DOMAIN}, timeout=2).text:
                return time.monotonic()
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise SystemExit(f"{DOMAIN} never served {needle!r}")


MILESTONES = ("queued ", "attempt ", "step: ", "succeeded")


def segments(op: Operation) -> list[tuple[str, float]]:
    """(what, seconds) between the operation log's milestones (queued, attempt started, each step,
    succeeded), each span named by the milestone that opens it; the agent's own lines between them
    belong to the span they fall in."""
    entries = [e for e in op.log_entries.order_by("id") if e.message.startswith(MILESTONES)]
    names = {
        "queued": "queued -> claimed by the worker (broker pick-up)",
        "attempt": "claimed -> first step (SSH connect, agent check)",
        "release": "release <new>: clone as site user + build",
    }
    out = []
    for entry, following in zip(entries, entries[1:], strict=False):
        name = entry.message.removeprefix("step: ")
        name = names.get(name.split(" ", 1)[0], name)
        out.append((name, (following.created_at - entry.created_at).total_seconds()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    network = localfleet.network_up("chompush", SUBNET)
    forge = worker = None
    try:
        with transaction.atomic():
            vps, op = services.vps_create(name="benchpush1", provider="local")
        operation_execute(operation_id=op.id)  # before the worker starts: it runs once, here
        vps.refresh_from_db()
        forge = Forge(network.gateway)
        worker = start_worker()
        measure(vps, forge, args.runs)
    finally:
        if worker:
            stop_worker(worker)
        if forge:
            forge.stop()
        for workdir in (WORK / "fleet").glob("*"):
            loaded = localfleet.vps_load(workdir)
            if loaded:
                localfleet.vps_destroy(loaded)
        localfleet.network_down(network)
        shutil.rmtree(WORK, ignore_errors=True)


def measure(vps, forge: Forge, runs: int) -> None:
    _, issued = tenant_create(slug="bench", tier="enterprise", owner_email="bench@localhost")
    api = APIClient(HTTP_HOST="localhost")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")
    body = {"domain": DOMAIN, "type": "static", "repository": {"url": forge.url, "branch": "main"}}
    created = api.post("/api/v1/sites", body, format="json")
    assert created.status_code == 202, created.content
    finished(created.json()["operation"]["id"])
    served(vps.ip_address, "<h1>first</h1>")
    hook = api.post(f"/api/v1/sites/{created.json()['id']}/webhook").json()
    path = urlsplit(hook["url"]).path

    totals, answered, op_done, steps = [], [], [], defaultdict(list)
    for n in range(runs):
        sha = forge.commit(f"run {n}")
        payload = forge.publish(sha)
        signature = hmac.new(hook["secret"].encode(), payload, hashlib.sha256).hexdigest()
        started = time.monotonic()
        answer = Client(HTTP_HOST="localhost").post(
            path, payload, content_type="application/json", HTTP_X_GITHUB_EVENT="push",
            HTTP_X_GITHUB_DELIVERY=str(uuid.uuid4()), HTTP_X_HUB_SIGNATURE_256=f"sha256={signature}",
        )  # fmt: skip
        answered.append(time.monotonic() - started)
        assert answer.status_code == 202, answer.content
        totals.append(served(vps.ip_address, f"<h1>run {n}</h1>") - started)
        op = finished(answer.json()["operation"]["id"])
        assert op.result["commit"] == sha, (op.result, sha)
        op_done.append((op.finished_at - op.created_at).total_seconds())
        for name, seconds in segments(op):
            steps[name].append(seconds)
        print(f"run {n}: served after {totals[-1]:.3f}s (webhook answered in {answered[-1] * 1000:.0f} ms)")

    print(f"\n{'measure':52} {'median':>8} {'min':>8} {'max':>8} {'runs':>5}")
    rows = {
        "push webhook received -> new commit served": totals,
        "webhook answered (202)": answered,
        "operation created -> finished (incl. verify)": op_done,
    }
    for name, values in rows.items():
        low, mid, high = min(values), statistics.median(values), max(values)
        print(f"{name:52} {mid:7.3f}s {low:7.3f}s {high:7.3f}s {len(values):5d}")
    print("\nwhere the operation's time goes (operation log, median per entry):")
    for name, values in steps.items():
        print(f"  {name:50} {statistics.median(values):7.3f}s")


if __name__ == "__main__":
    main()
