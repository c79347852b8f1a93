"""A real OpenSSH server on 127.0.0.1 for tests that must meet one (reading a host key, pinning it):
its own host key and authorized_keys under a temp directory, started on a free port, always stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port, stop_process

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class Sshd:
    port: int
    host_key: str  # the public key as CHOM pins it: "ssh-ed25519 AAAA…"
    fingerprint: str  # as `ssh-keygen -lf` prints it: "SHA256:…"
    log: Path


def require_sshd() -> None:
    if not os.access(SSHD, os.X_OK):
        pytest.skip(f"{SSHD} is not installed")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root for its privilege separation")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


@contextmanager
def loopback_sshd(workdir: Path, *, authorized_key: str = "") -> Iterator[Sshd]:
    """An sshd at 127.0.0.1:<free port> whose root login takes AUTHORIZED_KEY (if given) only."""
    require_sshd()
    workdir.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd insists on its privsep directory
    key = workdir / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    (workdir / "authorized_keys").write_text(authorized_key + "\n" if authorized_key else "")
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {key}\nPidFile none\nUsePAM no\n"
        f"PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}\nStrictModes no\nLogLevel VERBOSE\n"
    )
    log = workdir / "sshd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        public = Path(f"{key}.pub").read_text().split()
        printed = subprocess.run(
            ["ssh-keygen", "-lf", f"{key}.pub"], check=True, capture_output=True, text=True, timeout=30
        ).stdout.split()
        yield Sshd(port=port, host_key=f"{public[0]} {public[1]}", fingerprint=printed[1], log=log)
    finally:
        stop_process(proc, timeout=5)
