"""A local deploy target for deploy/deploy.sh: a throwaway source repository, a dedicated
PostgreSQL database and Redis DB, an env file, real gunicorn/celery processes under a temp
directory, and a request loop that counts every failed request. Used by tests/deploy and
bench/deploy_downtime.py."""

import hashlib
import http.client
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import free_port, wait_for  # noqa: F401 - re-exported to the deploy tests

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_SH = ROOT / "deploy" / "deploy.sh"
PYTHON = os.path.realpath(sys.executable)
FERNET_KEY = "7Mlf4o0a3jdjZ2-6xqq5cC2m2S0lyq6R9kKo1QqjDHk="
# Appended to a file of the release in a throwaway commit.
BROKEN_HEALTH = """

def check_broken_release() -> str:
    raise RuntimeError("this release is broken on purpose")


CHECKS["release"] = check_broken_release
"""
# Web processes import chom.celery too: only `celery ... worker` dies, after the canary passed.
BROKEN_WORKER = """

import sys as _sys

if "worker" in _sys.argv:
    raise SystemExit("this release's worker is broken on purpose")
"""

GIT = ["git", "-c", "user.name=CHOM tests", "-c", "user.email=tests@chom.invalid"]


def stop_process_group(proc: subprocess.Popen, *, timeout: float = 30) -> None:
    """TERM the process group (a gunicorn master and its workers), KILL it if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass


def wait_healthy(base: str, *, timeout: float = 30) -> None:
    def answers() -> bool:
        try:
            return get(base, "/health", timeout=1)[0] == 200
        except OSError:
            return False

    wait_for(answers, timeout=timeout, what=f"{base}/health 200")


# --- PostgreSQL and Redis of this machine (or CI's service containers) ----------------------------
def postgres_admin_url() -> str:
    """The server of DATABASE_URL when set (CI), else this machine's 127.0.0.1:5432 as postgres."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return urllib.parse.urlsplit(url)._replace(path="/postgres", query="").geturl()
    return "postgresql://postgres@127.0.0.1:5432/postgres"


def redis_base_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if url.startswith("redis://"):
        return urllib.parse.urlsplit(url)._replace(path="", query="").geturl()
    return "redis://127.0.0.1:6379"


def unreachable_services() -> str | None:
    """Why a real deploy cannot run here (a loud skip reason), or None."""
    for tool in ("psql", "pg_dump", "redis-cli", "git", "curl", "flock", "setsid"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    psql = subprocess.run(
        ["psql", postgres_admin_url(), "-XAtqc", "select 1"], capture_output=True, text=True, timeout=15
    )
    if psql.returncode != 0:
        return f"PostgreSQL at {postgres_admin_url()} is unreachable: {psql.stderr.strip()}"
    pong = subprocess.run(
        ["redis-cli", "-u", redis_base_url(), "ping"], capture_output=True, text=True, timeout=15
    )
    if pong.stdout.strip() != "PONG":
        return f"Redis at {redis_base_url()} is unreachable: {pong.stdout}{pong.stderr}"
    return None


def _psql(sql: str) -> None:
    subprocess.run(["psql", postgres_admin_url(), "-XAtqc", sql], check=True, capture_output=True, timeout=60)


def create_database() -> str:
    name = f"chom_deploy_{secrets.token_hex(4)}"
    _psql(f"CREATE DATABASE {name}")
    return name


def drop_database(name: str) -> None:
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def database_url(name: str) -> str:
    return urllib.parse.urlsplit(postgres_admin_url())._replace(path=f"/{name}").geturl()


# --- wheels and the source repository -------------------------------------------------------------
def wheelhouse() -> Path:
    """`pip wheel -r requirements.txt`, built once per requirements.txt and kept in ~/.cache."""
    requirements = (ROOT / "requirements.txt").read_bytes()
    key = hashlib.sha256(requirements + sys.version.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chom-deploy-tests"
    target = cache / f"wheels-{key}"
    if not target.exists():
        partial = cache / f"wheels-{key}.{os.getpid()}"
        requirements_txt = str(ROOT / "requirements.txt")
        subprocess.run(
            [PYTHON, "-m", "pip", "wheel", "--quiet", "-r", requirements_txt, "-w", str(partial)],
            check=True,
            timeout=600,
        )
        partial.rename(target)
    return target


def make_source_repo(path: Path) -> Path:
    """A git repository holding the working tree's files (tracked, or untracked but not ignored):
    what CI's clean clone holds, plus whatever is not committed yet in a developer's tree."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            destination = path / os.fsdecode(name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "working tree"], cwd=path, check=True)
    return path


def commit(repo: Path, message: str, *, branch: str = "main", edits: dict[str, str] | None = None) -> str:
    """Commit on BRANCH (created from main when new); EDITS maps a path to text appended to it."""
    switch = [branch] if branch == "main" else ["-b", branch]
    subprocess.run(["git", "checkout", "-q", *switch], cwd=repo, check=True)
    for name, text in (edits or {}).items():
        with open(repo / name, "a") as f:
            f.write(text)
    subprocess.run([*GIT, "commit", "-q", "-a", "--allow-empty", "-m", message], cwd=repo, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    subprocess.run(["git", "checkout", "-q", "main"], cwd=repo, check=True)
    return sha.stdout.strip()


# --- the target -----------------------------------------------------------------------------------
@dataclass
class DeployResult:
    returncode: int
    output: str
    seconds: float

    def rollback_seconds(self) -> float | None:
        found = re.search(r"ROLLED BACK to \S+ in ([\d.]+)s", self.output)
        return float(found.group(1)) if found else None


@dataclass
class Target:
    """One CHOM installation in a temp directory, deployed with CHOM_SERVICE_MANAGER=local."""

    root: Path
    repo: Path
    database: str
    redis_db: int
    wheels: Path
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.env_file = self.root.parent / f"{self.root.name}.env"
        self.env_file.write_text(
            "\n".join(
                [
                    "# written by tests/deploy/harness.py",
                    f"SECRET_KEY={secrets.token_urlsafe(60)}",
                    f"DATABASE_URL={database_url(self.database)}",
                    f"REDIS_URL={redis_base_url()}/{self.redis_db}",
                    "ALLOWED_HOSTS=127.0.0.1,localhost",
                    f"FIELD_ENCRYPTION_KEY={FERNET_KEY}",
                    f"CHOM_BIND=127.0.0.1:{self.port}",
                    "WEB_CONCURRENCY=2",
                    "WEB_THREADS=4",
                    # As deploy/README.md tells an operator: deploy.sh then shows /health's details.
                    f"METRICS_TOKEN={secrets.token_urlsafe(24)}",
                    "TRUSTED_PROXIES=127.0.0.1/32,::1/128",
                    "",
                ]
            )
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings_env(self) -> dict[str, str]:
        """What a CHOM process of this target sees (the env file, production settings)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_", "CHOM_"))}
        for k in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "STATIC_ROOT"):
            env.pop(k, None)
        for line in self.env_file.read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key] = value
        env["DJANGO_SETTINGS_MODULE"] = "chom.settings.production"
        return env

    def deploy_env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "USER")}
        env.update(
            CHOM_ROOT=str(self.root),
            CHOM_ENV_FILE=str(self.env_file),
            CHOM_REPO=str(self.repo),
            CHOM_SERVICE_MANAGER="local",
            CHOM_PYTHON=PYTHON,
            CHOM_WHEELHOUSE=str(self.wheels),
            CHOM_SHARE_VENVS="1",
            CHOM_MIN_FREE_MB="200",
            CHOM_WORKER_CONCURRENCY="1",
            CHOM_HEALTH_TIMEOUT="30",
            CHOM_CANARY_TIMEOUT="10",
            CHOM_WORKER_TIMEOUT="30",
            CHOM_WORKER_STOP_TIMEOUT="30",
        )
        env.update(overrides)
        return env

    def deploy(self, *args: str, timeout: float = 240, **overrides: str) -> DeployResult:
        started = time.monotonic()
        result = subprocess.run(
            [str(DEPLOY_SH), *args],
            env=self.deploy_env(**overrides),
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        output = result.stdout + result.stderr
        return DeployResult(result.returncode, output, time.monotonic() - started)

    def current(self) -> str:
        return os.readlink(self.root / "current").removeprefix("releases/")

    def releases(self) -> list[str]:
        return sorted(p.name for p in (self.root / "releases").iterdir())

    def pid(self, name: str) -> int | None:
        try:
            return int((self.root / "run" / f"{name}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def manage(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        release = self.root / "current"
        env = {**self.settings_env(), "STATIC_ROOT": str(release / "static"), **(extra_env or {})}
        result = subprocess.run(
            [str(release / "venv" / "bin" / "python"), "manage.py", *args],
            cwd=release,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def stop(self) -> None:
        """Stop everything this target started: deploy.sh stop, then anything left that runs from
        this directory (matched by its unique temp path) is killed with its process group."""
        try:
            subprocess.run(
                [str(DEPLOY_SH), "stop"], env=self.deploy_env(), capture_output=True, timeout=120, check=False
            )
        finally:
            kill_processes_under(self.root)


def kill_processes_under(path: Path) -> None:
    needle = str(path).encode()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                try:
                    if needle in (proc / "cmdline").read_bytes():
                        pids.append(int(proc.name))
                except OSError:
                    continue
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


# --- HTTP -----------------------------------------------------------------------------------------
def get(base: str, path: str, *, token: str | None = None, headers: dict | None = None, timeout: float = 5):
    """One request on a fresh connection, as nginx would forward it. Returns (status, headers, body)."""
    parsed = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    sent = {"X-Forwarded-Proto": "https", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    try:
        conn.request("GET", path, headers=sent)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


class RequestLoop(threading.Thread):
    """GETs /health and /api/v1/tenant alternately at RATE requests/s until stopped (at most
    MAX_SECONDS); every answer but 200 and every connection error counts as a failure."""

    def __init__(self, base: str, token: str, *, rate: float = 20, max_seconds: float = 240):
        super().__init__(daemon=True)
        self.base, self.token, self.interval, self.max_seconds = base, token, 1 / rate, max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            path, token = ("/health", None) if n % 2 == 0 else ("/api/v1/tenant", self.token)
            n += 1
            try:
                status, _, body = get(self.base, path, token=token)
                if status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"{path}: {status} {body[:200]!r}")
            except OSError as exc:
                self.failures.append(f"{path}: {exc!r}")
            self._stop_event.wait(self.interval)

    def stop(self) -> "RequestLoop":
        self._stop_event.set()
        self.join(timeout=15)
        return self

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def summary(self) -> str:
        return f"{self.total} requests, {self.ok} ok, {len(self.failures)} failed"
