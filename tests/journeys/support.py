"""The journeys' real CHOM stack and the HTTP client the journeys drive it with.

`Stack` is one CHOM installation started for the test session (tests/journeys/conftest.py builds it):
gunicorn with deploy/gunicorn.conf.py, the Celery worker of queues default and remote, the
notification worker (queue notify) and Celery beat, on a PostgreSQL database and a Redis db of their
own, with the local VPS provider and local stand-ins for the outside world. The test process runs no
operation itself: it speaks HTTP to the stack (`Api`), runs management commands the way an operator
would (`Stack.manage`), and looks inside a VPS only as an operator with a root shell would
(`vps_shell`).
"""

from __future__ import annotations

import http.client
import os
import shlex
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import requests

from fleet import localfleet
from tests.support.processes import BIN, ROOT, running, wait_for

OP_TIMEOUT = 300.0  # one operation on a busy 2-core machine takes seconds to a minute; bounds a hang
POLL_SECONDS = 1.0
HTTP_TIMEOUT = 30.0
FINAL = ("succeeded", "failed", "cancelled")


class Api:
    """One persona's view of CHOM's API (requests, its bearer token). `DIAGNOSTICS` (the stack's
    log tails) is appended to every failure message."""

    def __init__(self, base: str, token: str, *, name: str, diagnostics: Callable[[], str] = str):
        self.base, self.name, self._diagnostics = base, name, diagnostics
        self.slug = ""  # the tenant's, for a tenant owner
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        # A fresh connection per request: gunicorn closes idle keep-alive connections after 2 s,
        # and a request sent on one it is closing at that moment gets a connection reset.
        self.session.headers["Connection"] = "close"

    def request(self, method: str, path: str, *, expect: int | None = None, **kwargs) -> requests.Response:
        """METHOD BASE+PATH; a 429 waits as Retry-After says (bounded), EXPECT asserts the status."""
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        deadline = time.monotonic() + 120
        while True:
            response = self.session.request(method, self.base + path, **kwargs)
            if response.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(min(float(response.headers.get("Retry-After") or 1), 10))
        if expect is not None:
            assert response.status_code == expect, (
                f"{self.name}: {method} {path} answered {response.status_code}, expected {expect}:\n"
                f"{response.text[:3000]}"
            )
        return response

    def get(self, path: str, *, expect: int | None = 200, **kwargs) -> dict:
        return self.request("GET", path, expect=expect, **kwargs).json()

    def post(self, path: str, body: dict | None = None, *, expect: int | None = 202) -> dict:
        return self.request("POST", path, json=body or {}, expect=expect).json()

    def act(
        self, path: str, body: dict | None = None, *, expect: str = "succeeded", timeout: float = OP_TIMEOUT
    ) -> tuple[dict, dict]:
        """POST a long action (202 + Operation) and wait for its end: (the 202 body, the operation)."""
        accepted = self.post(path, body, expect=202)
        return accepted, self.wait_operation(accepted["operation"]["id"], expect=expect, timeout=timeout)

    def wait_operation(
        self, op_id: str, *, expect: str | None = "succeeded", timeout: float = OP_TIMEOUT
    ) -> dict:
        """Poll /api/v1/operations/ID until it is final (bounded); assert it ended as EXPECT (None:
        any final status). The failure message carries the operation's log and the stack's logs."""
        op: dict = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            op = self.get(f"/api/v1/operations/{op_id}")
            if op["status"] in FINAL:
                break
            time.sleep(POLL_SECONDS)
        else:
            raise AssertionError(
                f"operation {op.get('kind')} {op_id} still {op.get('status')} after {timeout:.0f}s\n"
                f"{operation_log(op)}\n{self._diagnostics()}"
            )
        if expect is not None:
            assert op["status"] == expect, (
                f"operation {op['kind']} {op_id} {op['status']}, expected {expect}: {op['error']}\n"
                f"{operation_log(op)}\n{self._diagnostics()}"
            )
        return op


def operation_log(op: dict) -> str:
    lines = [f"  {e['time']} {e['level']}: {e['message']}" for e in op.get("log", [])]
    return "operation log:\n" + ("\n".join(lines) or "  (empty)")


@dataclass
class Stack:
    """A running CHOM (see the module docstring). `env` is what every CHOM process of it sees."""

    url: str
    env: dict[str, str]
    folder: Path  # logs and CHOM's var directory
    fleet_dir: Path  # LOCAL_FLEET_DIR: one workdir per local VPS
    gateway: str  # the fleet bridge's host address: git servers for the VPSes listen here
    argv: dict[str, list[str]]
    stripe: object = None  # tests.billing.fake_stripe.FakeStripe, the stack's Stripe
    stripe_webhook_secret: str = ""
    pebble: object = None  # devstack.pebble.Pebble: issuing_root() verifies the sites' HTTPS
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _contexts: dict[str, ExitStack] = field(default_factory=dict)
    _starts: count = field(default_factory=count)
    _slugs: count = field(default_factory=lambda: count(1))
    _staff: Api | None = None

    # --- processes ------------------------------------------------------------------------------
    def start(self, name: str) -> subprocess.Popen:
        """Start process NAME (web, worker, notify, beat) with a new log file; see `ready`."""
        if name in self._contexts:
            raise RuntimeError(f"{name} is already running")
        context = ExitStack()
        log = self.folder / f"{name}-{next(self._starts)}.log"
        self.processes[name] = context.enter_context(running(self.argv[name], env=self.env, log=log))
        self.processes[name].log = log
        self._contexts[name] = context
        return self.processes[name]

    def stop(self, name: str) -> None:
        """Stop NAME as systemd would (TERM to its process group, KILL after a grace period)."""
        context = self._contexts.pop(name, None)
        if context is not None:
            context.close()

    def stop_all(self) -> None:
        for name in reversed(list(self._contexts)):
            self.stop(name)

    def ready(self, name: str, *, timeout: float = 120) -> None:
        """NAME is up: web answers /health 200 (database, broker, a worker heartbeat); a worker
        logged "ready."; beat logged its start. Fails at once when the process died."""
        proc = self.processes[name]
        marker = {"worker": b" ready.", "notify": b" ready.", "beat": b"beat: Starting"}.get(name)

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            if marker:
                return marker in proc.log.read_bytes()
            try:
                return requests.get(f"{self.url}/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_for(up, timeout=timeout, interval=0.3, what=f"{name} ready")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail(name)}") from None

    def log_tail(self, name: str, lines: int = 40) -> str:
        proc = self.processes.get(name)
        if proc is None or not proc.log.exists():
            return f"--- {name}: not running"
        text = proc.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {name} ({proc.log}):\n" + "\n".join(text)

    def diagnostics(self) -> str:
        return "\n".join(self.log_tail(name, 25) for name in ("worker", "web"))

    def manage(self, *args: str, timeout: float = 300) -> str:
        """`manage.py ARGS` against the stack's database, as an operator runs it; its stdout."""
        result = subprocess.run(
            [str(BIN / "python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, (
            f"manage.py {shlex.join(args)}:\n{result.stdout}{result.stderr[-3000:]}"
        )
        return result.stdout

    # --- personas -------------------------------------------------------------------------------
    def api(self, token: str, *, name: str) -> Api:
        return Api(self.url, token, name=name, diagnostics=self.diagnostics)

    def staff(self) -> Api:
        """Platform staff (manage.py create_staff_token), one per session."""
        if self._staff is None:
            token = self.manage("create_staff_token", "ops@journeys.test").strip().splitlines()[-1]
            self._staff = self.api(token, name="staff")
        return self._staff

    def tenant(self, name: str, *, tier: str = "pro") -> Api:
        """A new tenant (slug NAME-N, unique in the session) and its owner's API (manage.py create_tenant)."""
        slug = f"{name}-{next(self._slugs)}"
        out = self.manage("create_tenant", slug, "--tier", tier, "--owner-email", f"owner@{slug}.test")
        owner = self.api(out.strip().splitlines()[-1], name=f"owner of {slug}")
        owner.slug = slug
        return owner

    # --- the fleet ------------------------------------------------------------------------------
    def create_vps(self, name: str, *, kind: str = "shared") -> dict:
        """Staff creates a local VPS through the API and waits for it to be active: its detail."""
        staff = self.staff()
        _, op = staff.act("/api/v1/vps", {"name": name, "provider": "local", "kind": kind}, timeout=600)
        vps = staff.get(f"/api/v1/vps/{op['target_id']}")
        assert vps["status"] == "active", vps
        return vps

    def vps_workdir(self, vps: dict) -> Path:
        return self.fleet_dir / vps["provider_id"]

    def destroy_vpses(self) -> None:
        for workdir in self.fleet_dir.glob("*"):
            local = localfleet.vps_load(workdir)
            if local:
                localfleet.vps_destroy(local)


def vps_shell(stack: Stack, vps: dict, script: str, *args: str, timeout: float = 60) -> str:
    """Run sh -c SCRIPT (ARGS as $1...) as root inside the VPS's namespaces, as an operator with a
    root shell on the server would (never through CHOM); its stdout. Fails with stderr."""
    init = _container_init(stack.vps_workdir(vps))
    argv = ["nsenter", f"--target={init}", "--mount", "--uts", "--ipc", "--net", "--pid", "--",
            "/bin/sh", "-c", script, "sh", *args]  # fmt: skip
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"on {vps['name']}: {script} {args}: {result.stderr}{result.stdout}"
    return result.stdout


def _container_init(workdir: Path) -> int:
    """The PID (on this host) of the VPS's systemd: the process of the VPS's cgroup that is PID 1
    in its own PID namespace."""
    local = localfleet.vps_load(workdir)
    assert local, f"no local VPS in {workdir}"
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            in_vps = f"/{local.netns}/" in (proc / "cgroup").read_text()
            nspid = next(
                line for line in (proc / "status").read_text().splitlines() if line.startswith("NSpid:")
            )
        except (OSError, StopIteration):
            continue
        pids = nspid.split()[1:]  # this host's, then each nested PID namespace's
        if in_vps and len(pids) > 1 and pids[-1] == "1":
            return int(proc.name)
    raise AssertionError(f"the VPS in {workdir} ({local.netns}) has no running init")


def site_get(ip: str, host: str, path: str = "/", *, timeout: float = 10) -> requests.Response:
    """HTTP to the VPS's address with Host: HOST, as a visitor whose DNS points HOST there."""
    return requests.get(f"http://{ip}{path}", headers={"Host": host}, timeout=timeout)


def unique(prefix: str) -> str:
    """A name unique to this test run (VPS names, domains): runs on one machine never share one."""
    return f"{prefix}-{os.getpid() % 10000}"


# --- a tenant's PHP application ---------------------------------------------------------------------
# Plain PHP (no framework) in a git repository: GET / lists its notes (rows of its database and
# files in shared/uploads); POST /note.php adds one of each. CHOM gives it its database in the
# release's .env (-> shared/.env); the release serves its top level (`public -> .`).
PHP_LIB = """<?php
function app_home(): string
{
    // /var/www/NAME/releases/R (or current/public, unresolved): the site's home is NAME.
    return preg_replace('#/(releases|current)/.*$#', '', __DIR__);
}

function app_db(): mysqli
{
    $env = [];
    foreach (file(__DIR__ . '/.env', FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) {
        [$name, $value] = array_pad(explode('=', $line, 2), 2, '');
        $env[$name] = trim($value, '"');
    }
    $db = new mysqli($env['DB_HOST'], $env['DB_USERNAME'], $env['DB_PASSWORD'], $env['DB_DATABASE']);
    $db->query('CREATE TABLE IF NOT EXISTS notes
        (id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(200) NOT NULL)');
    return $db;
}

function app_uploads(): string
{
    $dir = app_home() . '/shared/uploads';
    if (!is_dir($dir)) {
        mkdir($dir, 0750, true);
    }
    return $dir;
}
"""
PHP_INDEX = """<?php
require __DIR__ . '/lib.php';
$db = app_db();
$rows = $db->query('SELECT id, body FROM notes ORDER BY id')->fetch_all();
$files = [];
foreach (glob(app_uploads() . '/*') as $path) {
    $files[basename($path)] = hash_file('sha256', $path);
}
header('Content-Type: application/json');
echo json_encode(['app' => 'journeys', 'version' => '%(version)s', 'rows' => $rows, 'files' => $files]);
"""
PHP_NOTE = """<?php
require __DIR__ . '/lib.php';
$db = app_db();
$body = (string) ($_POST['body'] ?? '');
$insert = $db->prepare('INSERT INTO notes (body) VALUES (?)');
$insert->bind_param('s', $body);
$insert->execute();
$name = 'note-' . $db->insert_id . '.txt';
file_put_contents(app_uploads() . '/' . $name, $body);
header('Content-Type: application/json');
echo json_encode(['id' => $db->insert_id, 'file' => $name]);
"""


def php_app_files(version: str = "1") -> dict[str, str]:
    """The PHP application's files (for tests.support.git.git_repo); VERSION shows on GET /."""
    return {"lib.php": PHP_LIB, "index.php": PHP_INDEX % {"version": version}, "note.php": PHP_NOTE}


def php_app_state(stack: Stack, vps: dict, site_id: int) -> dict:
    """The app's data as the server holds it: a hash of its table's rows (MariaDB, in id order) and
    of each file in shared/uploads. Read as root on the VPS, never through the app."""
    name = f"site{site_id}"
    rows = vps_shell(
        stack, vps, 'mariadb -N -e "SELECT id, body FROM notes ORDER BY id" "$1" | sha256sum', name
    ).split()[0]
    count_ = vps_shell(stack, vps, 'mariadb -N -e "SELECT COUNT(*) FROM notes" "$1"', name).strip()
    files = vps_shell(
        stack, vps, 'cd "$1" && find . -type f -exec sha256sum {} + | sort', f"/var/www/{name}/shared/uploads"
    )
    return {"rows": rows, "count": int(count_), "files": files}


def https_get(ip: str, host: str, root_pem: str, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    """GET over TLS to the VPS's address with SNI and Host = HOST, the certificate verified against
    ROOT_PEM (the ACME CA's issuing root): (status, headers, body)."""
    context = ssl.create_default_context(cadata=root_pem)

    class Pinned(http.client.HTTPSConnection):
        def connect(self):
            raw = socket.create_connection((ip, 443), timeout=self.timeout)
            self.sock = context.wrap_socket(raw, server_hostname=host)

    connection = Pinned(host, 443, timeout=10, context=context)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()
