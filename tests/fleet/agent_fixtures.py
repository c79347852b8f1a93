"""The harness shared by the agent's test modules: run vpsmanager.py like CHOM does, against a
temp VPSMANAGER_ROOT with recording fakes for systemctl, apt-get and ufw (no systemd here, and
tests must not install packages); the daemons themselves are the real binaries.

Set VPSMANAGER_TEST_PYTHON=/path/to/python3.9 to run the agent under the oldest supported Python.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fleet.remote.agent_client import launcher_source
from tests.support.processes import free_port  # noqa: F401 - re-exported to the agent tests

AGENT = Path(__file__).resolve().parents[2] / "fleet" / "on_vps" / "vpsmanager.py"
PYTHON = os.environ.get("VPSMANAGER_TEST_PYTHON", sys.executable)
NGINX = "/usr/sbin/nginx"
PHP_FPM = "/usr/sbin/php-fpm8.2"
SSHD = "/usr/sbin/sshd"
MARIADBD = "/usr/sbin/mariadbd"
DEADLINE = 10.0

BASE_PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
BASE_GROUP = "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n"

FAKE_SYSTEMCTL = """#!/bin/sh
# Records every call; units are "active"/"enabled" when a marker file exists in STATE.
STATE=@STATE@
echo "$*" >> @CALLS@
cmd=$1; shift; [ "$1" = "--" ] && shift
case $cmd in
  is-active) rc=0; for u; do
      if [ -e "$STATE/active.$u" ]; then echo active; else echo inactive; rc=3; fi; done
    exit $rc;;
  is-enabled) rc=0; for u; do
      if [ -e "$STATE/enabled.$u" ]; then echo enabled; else echo disabled; rc=1; fi; done
    exit $rc;;
  start) touch "$STATE/active.$1";;
  stop) rm -f "$STATE/active.$1";;
  enable) touch "$STATE/enabled.$1";;
  disable) rm -f "$STATE/enabled.$1";;
  reload) [ -e "$STATE/active.$1" ] || { echo "Unit $1 is not active, cannot reload." >&2; exit 1; };;
  *) echo "fake systemctl: unsupported $cmd" >&2; exit 2;;
esac
"""

RECORDER = """#!/bin/sh
echo "$*${DEBIAN_FRONTEND:+ [DEBIAN_FRONTEND=$DEBIAN_FRONTEND]}" >> @LOG@
exit @STATUS@
"""


def recorder(log: Path, status: int = 0) -> str:
    return RECORDER.replace("@LOG@", str(log)).replace("@STATUS@", str(status))


# --------------------------------------------------------------------------- harness


@dataclass
class Result:
    rc: int
    out: dict[str, Any]

    @property
    def error(self) -> dict[str, str]:
        return self.out["error"]


@dataclass
class Agent:
    root: Path
    fakes: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, command: str, payload: Any = None, *, raw: str | None = None) -> Result:
        stdin = raw if raw is not None else json.dumps(payload or {})
        proc = subprocess.run(
            [PYTHON, str(self.fakes / "vpsmanager"), command],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            # The agent itself must set DEBIAN_FRONTEND; do not inherit the CI's.
            env={**without(os.environ, "DEBIAN_FRONTEND"), **self.env},
        )
        lines = proc.stdout.splitlines()
        assert len(lines) == 1, f"expected one JSON line, got {proc.stdout!r} {proc.stderr!r}"
        out = json.loads(lines[0])
        assert out["ok"] is (proc.returncode == 0), out
        return Result(proc.returncode, out)

    def ok(self, command: str, payload: Any = None) -> dict[str, Any]:
        result = self(command, payload)
        assert result.rc == 0, result.out
        return result.out

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def fake(self, name: str, text: str) -> str:
        path = self.fakes / name
        path.write_text(text)
        path.chmod(0o755)
        return str(path)

    def calls(self, name: str) -> list[str]:
        log = self.fakes / f"{name}.calls"
        return log.read_text().splitlines() if log.exists() else []


def without(env: Any, key: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != key}


def make_agent(base: Path) -> Agent:
    """A root tree under `base` with base passwd/group files and the recording fakes."""
    root, fakes, state = base / "root", base / "fakes", base / "systemd"
    for directory in (root / "etc", fakes, state):
        directory.mkdir(parents=True)
    (root / "etc" / "passwd").write_text(BASE_PASSWD)
    (root / "etc" / "group").write_text(BASE_GROUP)
    (root / "etc" / "shadow").write_text("")
    (root / "etc" / "gshadow").write_text("")
    (root / "etc" / "shadow").chmod(0o640)
    agent = Agent(root=root, fakes=fakes)
    agent.fake("vpsmanager", launcher_source(str(AGENT.parent)).decode())  # what CHOM runs
    systemctl = agent.fake(
        "systemctl",
        FAKE_SYSTEMCTL.replace("@STATE@", str(state)).replace("@CALLS@", str(fakes / "systemctl.calls")),
    )
    # Anything that could touch the host package database must be an explicit fake.
    refuse = agent.fake("refuse", recorder(fakes / "refuse.calls", 97))
    agent.env = {
        "VPSMANAGER_ROOT": str(root),
        "VPSMANAGER_SYSTEMCTL": systemctl,
        "VPSMANAGER_APT_GET": refuse,
        "VPSMANAGER_UFW": str(fakes / "no-ufw-here"),
        "VPSMANAGER_TIMEOUT": "30",
    }
    return agent


def wait_for(check: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def require(binary: str) -> None:
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} is not installed")


# --------------------------------------------------------------------------- sites


SITE = "site1"
R = [f"20261127T0415{i:02d}-ab12cd" for i in range(40)]  # release ids, oldest first
PHP = "/usr/bin/php"
GIT = "/usr/bin/git"


def require_site_tools() -> None:
    for binary in ("/usr/sbin/useradd", "/usr/bin/setpriv", GIT, PHP):
        require(binary)
    help_text = subprocess.run(["useradd", "--help"], capture_output=True, text=True, timeout=30).stdout
    if "--prefix" not in help_text:
        pytest.skip("useradd has no --prefix on this host")


@pytest.fixture(name="agent")
def site_agent(base: Path) -> Agent:
    """The site modules' `agent`, imported by them in place of conftest's: its root is in `base`,
    which the site user and nginx's workers can reach, and supervisorctl is a recording fake."""
    require_site_tools()
    agent = make_agent(base)
    agent.env["VPSMANAGER_SUPERVISORCTL"] = agent.fake(
        "supervisorctl", recorder(agent.fakes / "supervisorctl.calls", 0)
    )
    return agent


def placeholder(release: str, html: str | None = None, **extra: Any) -> dict[str, Any]:
    source = {"type": "placeholder", "html": html if html is not None else f"release {release}"}
    return {"name": SITE, "release": release, "source": source, **extra}


def mode_owner(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def make_repo(base: Path, owner: int, files: dict[str, str]) -> tuple[Path, str]:
    """A real git repository owned by the site user (git refuses other owners' repositories)."""
    repo = base / "repo"
    repo.mkdir()
    for rel, content in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(content)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    for argv in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "first"]):
        subprocess.run([GIT, *argv], cwd=repo, env=env, check=True, timeout=30)
    sha = subprocess.run(
        [GIT, "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, owner, owner)
    return repo, sha


@dataclass
class Web:
    port: int

    def get(self, host: str, path: str = "/") -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc)
