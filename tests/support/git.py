"""Git repositories and a git server for e2e tests: repositories built on the host, served to
the test VPSes from the fleet bridge's gateway (TESTBED "Git servers for test VPSes")."""

import socket
import subprocess
from pathlib import Path

from devstack.processes import free_port, stop_processes
from tests.support.processes import wait_for


def git_repo(path: Path, files: dict[str, str], message: str) -> str:
    path.mkdir(parents=True, exist_ok=True)
    if not (path / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(path), "commit", "-q", "-m", message],
        check=True,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    return subprocess.run(
        ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


class GitServer:
    """A real git daemon on the fleet bridge (git://), as a forge would be for the VPS."""

    def __init__(self, base: Path, host: str):
        self.base, self.host = base, host
        self.port = free_port(host)
        self.proc = subprocess.Popen(
            ["git", "daemon", f"--base-path={base}", "--export-all", "--reuseaddr", f"--listen={host}",
             f"--port={self.port}", str(base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_for(lambda: _port_open(host, self.port), timeout=10, what="git daemon")

    def publish(self, repo: Path, name: str) -> str:
        bare = self.base / name
        subprocess.run(["rm", "-rf", str(bare)], check=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
        return f"git://{self.host}:{self.port}/{name}"

    def stop(self) -> None:
        stop_processes([self.proc])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
