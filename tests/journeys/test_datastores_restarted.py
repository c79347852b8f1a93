"""Journey: Redis and then PostgreSQL are restarted while API clients write. No 5xx outside the
restart windows, and no operation lost: every operation a 202 accepted ends in a final state.

This journey restarts its datastores, so it never runs on the machine's shared ones (the session
stack's neither): it starts a private PostgreSQL cluster (initdb on a spare port, run as the
postgres user) and a private redis-server (spare port, no persistence, so a kill loses the queued
messages as a crashed Redis would), and a small CHOM stack of its own on them, built like the
session stack (tests/journeys/conftest.py): gunicorn, the worker and beat. Beat's reclaim job is what
re-enqueues operations whose broker message died with Redis; OPERATION_LOST_MESSAGE_SECONDS is short
on this stack so that happens within the journey.

The burst: staff registers manual VPSes (POST /api/v1/vps, 202 + a vps.create operation that fails
fast and clean: its address answers no SSH) while a tenant creates API tokens and reads its
operations, from a few threads. A window is "restart began -> the service answers again" plus
WINDOW_MARGIN seconds; a 5xx outside every window fails the journey.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.journeys.conftest import stack_argv, stack_env
from tests.journeys.faults import Steps
from tests.journeys.support import FINAL, Stack
from tests.support.processes import free_port, stop_process, wait_for, worker_env

pytestmark = pytest.mark.timeout(600)

BURST_SECONDS = 15.0
THREADS = 3
REDIS_DOWN_AT, PG_DOWN_AT = 3.0, 8.0  # seconds into the burst
REDIS_DOWN_SECONDS = 1.0  # killed, then started again on the same port after this
WINDOW_MARGIN = 3.0
# Every VPS_EVERY-th round of a client registers a VPS: each vps.create tries SSH 3 times (about
# 2 s of a worker slot each, 5 and 10 s backoff), so the worker drains them in about a minute.
VPS_EVERY = 6
LOST_MESSAGE_SECONDS = 20  # a queued row older than this is enqueued again by beat's reclaim job
FINAL_WAIT = 240.0  # beat runs the reclaim job every 60 s; a retried vps.create backs off 5 + 10 s
PG_BIN = (
    sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1] if Path("/usr/lib/postgresql").exists() else None
)


def test_it_loses_no_operation_and_answers_no_5xx_beyond_the_datastore_restarts(datastore_stack):
    stack, postgres, redis_server = datastore_stack
    steps = Steps("Redis and PostgreSQL restarted during a burst of API writes")
    staff, owner = stack.staff(), stack.tenant("burst", tier="enterprise")
    closed_port = _closed_port()
    burst = Burst(stack.url, staff.session.headers["Authorization"], owner.session.headers["Authorization"])
    steps("private PostgreSQL + Redis + CHOM stack up, staff and tenant")

    burst.start(closed_port)
    time.sleep(REDIS_DOWN_AT)
    begun = burst.clock()
    redis_server.kill()
    time.sleep(REDIS_DOWN_SECONDS)
    redis_server.start()
    burst.windows.append(("redis", begun, _answering_again(stack, burst) + WINDOW_MARGIN))
    time.sleep(max(0.0, PG_DOWN_AT - burst.clock()))
    begun = burst.clock()
    postgres.restart()
    burst.windows.append(("postgres", begun, _answering_again(stack, burst) + WINDOW_MARGIN))
    burst.join(BURST_SECONDS)
    steps(f"burst of {len(burst.results)} requests over {burst.clock():.1f}s")

    _print_burst(burst)
    outside = [r for r in burst.results if r.status >= 500 and not burst.in_window(r)]
    assert not outside, (
        f"5xx outside the restart windows {burst.windows}: {outside[:10]}\n{stack.diagnostics()}"
    )
    assert burst.accepted, "the burst had no 202 at all: it proved nothing"
    assert Counter(r.status for r in burst.results if not burst.in_window(r)).keys() <= {200, 201, 202}, (
        Counter(r.status for r in burst.results)
    )

    pending = _wait_final(stack, staff, burst.accepted)
    steps(f"every accepted operation final ({len(burst.accepted)})")
    assert not pending, (
        f"{len(pending)} of {len(burst.accepted)} accepted operations not final after {FINAL_WAIT:.0f}s: "
        f"{pending[:10]}\n{stack.log_tail('beat', 20)}\n{stack.diagnostics()}"
    )
    steps.report()


# --- the burst --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    at: float  # seconds into the burst, when the request was sent
    took: float
    what: str
    status: int  # 0: no HTTP answer (connection refused/reset, timeout)


@dataclass
class Burst:
    url: str
    staff_auth: str
    owner_auth: str
    results: list[Result] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # operation ids of 202s
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _start: float = 0.0

    def clock(self) -> float:
        return time.monotonic() - self._start

    def start(self, closed_port: int) -> None:
        self._start = time.monotonic()
        for n in range(THREADS):
            thread = threading.Thread(target=self._client, args=(n, closed_port), daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds - self.clock()))
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads), "a burst client hangs"

    def in_window(self, result: Result) -> bool:
        """The request was in flight during a window (sent before its start counts when it was
        still waiting for its answer then)."""
        return any(result.at <= end and result.at + result.took >= start for _, start, end in self.windows)

    def _client(self, n: int, closed_port: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            if i % VPS_EVERY == 1:
                body = {"name": f"burst-{os.getpid() % 10000}-{n}-{i}", "provider": "manual",
                        "ip_address": "127.0.0.1", "ssh_port": closed_port}  # fmt: skip
                response = self._send("vps.create", self.staff_auth, "POST", "/api/v1/vps", json=body)
                if response is not None and response.status_code == 202:
                    with self._lock:
                        self.accepted.append(response.json()["operation"]["id"])
            self._send("token.create", self.owner_auth, "POST", "/api/v1/tokens", json={"name": f"b{n}-{i}"})
            self._send("operations.list", self.owner_auth, "GET", "/api/v1/operations")
            time.sleep(0.1)

    def _send(self, what: str, auth: str, method: str, path: str, **kwargs) -> requests.Response | None:
        at = self.clock()
        headers = {"Authorization": auth, "Connection": "close"}
        try:
            response = requests.request(method, self.url + path, headers=headers, timeout=20, **kwargs)
        except requests.RequestException:
            response = None
        result = Result(at, self.clock() - at, what, response.status_code if response is not None else 0)
        with self._lock:
            self.results.append(result)
        return response


def _answering_again(stack: Stack, burst: Burst, timeout: float = 60) -> float:
    """When /health answers 200 again (database and broker up): the burst's clock."""

    def healthy() -> bool:
        try:
            return requests.get(f"{stack.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(healthy, timeout=timeout, interval=0.1, what="CHOM healthy again")
    return burst.clock()


def _print_burst(burst: Burst) -> None:
    print(f"\n  restart windows (s into the burst, incl. {WINDOW_MARGIN}s margin):")
    for name, start, end in burst.windows:
        inside = Counter(r.status for r in burst.results if r.at <= end and r.at + r.took >= start)
        print(f"    {name:8s} {start:5.1f} -> {end:5.1f}  statuses {dict(sorted(inside.items()))}")
    for what in sorted({r.what for r in burst.results}):
        mine = [r for r in burst.results if r.what == what]
        outside = Counter(r.status for r in mine if not burst.in_window(r))
        print(f"    {what:16s} {len(mine):4d} requests, outside windows {dict(sorted(outside.items()))}, "
              f"slowest {max(r.took for r in mine):.1f}s")  # fmt: skip
    print(f"    operations accepted (202): {len(burst.accepted)}")


def _wait_final(stack: Stack, staff, ids: list[str]) -> list[str]:
    """Poll every accepted operation until final (bounded); the ones still pending then, each with
    its status and last log lines."""
    pending, deadline, started = dict.fromkeys(ids, ""), time.monotonic() + FINAL_WAIT, time.monotonic()
    finals: Counter = Counter()
    while pending and time.monotonic() < deadline:
        for op_id in list(pending):
            op = staff.get(f"/api/v1/operations/{op_id}")
            if op["status"] in FINAL:
                finals[op["status"]] += 1
                messages = [e["message"] for e in op["log"]]
                finals["of which enqueued again by the reclaim job (queued > LOST_MESSAGE_SECONDS)"] += (
                    "still queued: enqueued again" in messages
                )
                finals["of which retried after losing the database"] += any(
                    "database connection was lost" in m for m in messages
                )
                del pending[op_id]
            else:
                log = " | ".join(e["message"] for e in op["log"][-4:])
                pending[op_id] = f"{op_id} {op['status']} attempts={op['attempts']}: {log}"
        if pending:
            time.sleep(2)
    print(f"  final after {time.monotonic() - started:.1f}s: {dict(finals)}; still pending: {len(pending)}")
    return list(pending.values())


def _closed_port() -> int:
    """A loopback port nothing listens on: SSH to it is refused at once."""
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    return port


# --- the private datastores and stack -----------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of this journey's own (initdb), run as the postgres user on a spare port."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.data, self.log = folder / "data", folder / "postgres.log"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=timeout,
            cwd=self.folder,
        )  # fmt: skip
        assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"

    def start(self) -> None:
        shutil.chown(self.folder, "postgres", "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self._ctl("start")
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "chom")

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", action, *extra)  # fmt: skip

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._ctl("stop", "-m", "immediate")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/chom"


class PrivateRedis:
    """A redis-server of this journey's own on a spare port, without persistence."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.proc = folder, free_port(), None
        self._logs = 0

    def start(self) -> None:
        self._logs += 1
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.folder)]  # fmt: skip
        with open(self.folder / f"redis-{self._logs}.log", "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._answers, timeout=30, interval=0.05, what="private redis-server up")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited {self.proc.returncode}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        """SIGKILL, as a crash: the queued messages are gone with it."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def datastore_stack():
    if PG_BIN is None or shutil.which("redis-server") is None:
        pytest.fail("this journey needs PostgreSQL's server binaries and redis-server")
    folder = Path(tempfile.mkdtemp(prefix="chom-j-datastores-"))
    folder.chmod(0o755)
    postgres, redis_server = PrivatePostgres(folder / "pg"), PrivateRedis(folder)
    (folder / "pg").mkdir()
    stack = None
    try:
        postgres.start()
        redis_server.start()
        stack = _private_stack(folder, postgres.url, redis_server.url)
        yield stack, postgres, redis_server
    finally:
        if stack is not None:
            stack.stop_all()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _private_stack(folder: Path, database_url: str, redis_url: str) -> Stack:
    """Web, worker and beat as the session stack runs them (its argv), on the private datastores."""
    port, var = free_port(), folder / "var"
    (var / "prometheus").mkdir(parents=True)
    env = worker_env(
        {
            **stack_env(var=var, port=port, database_url=database_url, redis_url=redis_url),
            "OPERATION_LOST_MESSAGE_SECONDS": str(LOST_MESSAGE_SECONDS),
        }
    )
    stack = Stack(url=f"http://127.0.0.1:{port}", env=env, folder=folder, fleet_dir=folder / "fleet",
                  gateway="127.0.0.1", argv=stack_argv(var))  # fmt: skip
    stack.manage("migrate", "--noinput", timeout=600)
    try:
        for name in ("worker", "beat", "web"):
            stack.start(name)
        for name in ("worker", "beat", "web"):
            stack.ready(name)
    except BaseException:
        stack.stop_all()
        raise
    return stack
