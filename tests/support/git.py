"""Git repositories and a git server for e2e tests: repositories built on the host, served to
the test VPSes from the fleet bridge's gateway (TESTBED "Git servers for test VPSes")."""

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
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


class GitSshServer:
    """A git server reachable only over SSH, as a private GitHub repository is for a VPS: its own
    sshd on HOST (host key and config in WORKDIR), one temporary host account whose shell is
    git-shell and whose authorized keys are the deploy keys given to `authorize`. Repositories
    live in the account's home, a fresh directory outside pytest's root-only tmp tree. `stop()`
    stops sshd, removes the account and its repositories."""

    def __init__(self, workdir: Path, host: str):
        self.workdir, self.host = workdir, host
        self.user = f"chomgit{secrets.token_hex(4)}"
        self.home = Path(tempfile.mkdtemp(prefix="chom-gitssh-"))
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        _run("useradd", "--no-create-home", "--home-dir", str(self.home), "--shell", "/usr/bin/git-shell",
             "--comment", "CHOM test git server", self.user)  # fmt: skip
        try:
            _run("usermod", "-p", "*", self.user)  # a locked ("!") account cannot log in even with a key
            os.chown(self.home, _uid(self.user), _uid(self.user, group=True))
            self.keys = self.home / "authorized_keys"
            self.keys.write_text("")
            self.port = free_port(host)
            self.rotate_host_key()
        except BaseException:
            self.stop()
            raise

    def authorize(self, *public_keys: str) -> None:
        """Exactly these keys may log in (git-shell only, no forwarding, no pty)."""
        self.keys.write_text("".join(f"restrict {key}\n" for key in public_keys))

    def publish(self, repo: Path, name: str) -> str:
        bare = self.home / name
        subprocess.run(["rm", "-rf", str(bare)], check=True, timeout=30)
        subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True, timeout=60)
        _run("chown", "-R", f"{self.user}:", str(bare))
        return f"ssh://{self.user}@{self.host}:{self.port}{bare}"

    def rotate_host_key(self) -> None:
        """A new host key (as after a reinstall, or a machine in between): sshd restarts with it on
        the same port. `host_key` is "type base64", `fingerprint` as ssh-keygen prints it."""
        self._stop_sshd()
        key = self.workdir / "ssh_host_ed25519_key"
        for path in (key, Path(f"{key}.pub")):
            path.unlink(missing_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        self.host_key = " ".join(Path(f"{key}.pub").read_text().split()[:2])
        argv = ["ssh-keygen", "-lf", f"{key}.pub"]
        printed = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        self.fingerprint = printed.stdout.split()[1]
        config = self.workdir / "sshd_config"
        config.write_text(
            f"ListenAddress {self.host}\nPort {self.port}\nHostKey {key}\nPidFile none\nUsePAM no\n"
            f"AllowUsers {self.user}\nPermitRootLogin no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"AuthorizedKeysFile {self.keys}\nStrictModes no\nDisableForwarding yes\nPermitTTY no\n"
            "LogLevel VERBOSE\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        with open(self.workdir / "sshd.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(lambda: _ssh_banner(self.host, self.port), timeout=10, what="git sshd")

    def log(self) -> str:
        path = self.workdir / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _stop_sshd(self) -> None:
        if self.proc is not None:
            stop_processes([self.proc])
            self.proc = None

    def stop(self) -> None:
        self._stop_sshd()
        subprocess.run(["userdel", self.user], capture_output=True, timeout=30)
        shutil.rmtree(self.home, ignore_errors=True)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def _uid(user: str, *, group: bool = False) -> int:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_gid if group else entry.pw_uid


def _ssh_banner(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False
