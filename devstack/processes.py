"""Child processes for the local stand-ins: spawned in their own session, waited for with
bounded timeouts, always stopped (TERM, then KILL)."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

READY_TIMEOUT = 20.0


def require(binary: str, *, package: str) -> str:
    """The path of BINARY, or one sentence saying what to install."""
    path = shutil.which(binary)
    if not path:
        raise FileNotFoundError(f"{binary} is not installed: apt-get install {package}")
    return path


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_tcp(host: str, port: int, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def spawn(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """A child in its own session (so a Ctrl-C of the parent reaches it only through us)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def wait_http(url: str, proc: subprocess.Popen, log: Path, *, ok=lambda response: response.ok) -> None:
    """Bounded wait until URL answers as OK wants; fails at once if PROC died."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}); see {log}")
        try:
            if ok(requests.get(url, timeout=0.2)):
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {READY_TIMEOUT}s; see {log}")


def stop_processes(processes: list[subprocess.Popen], timeout: float = 10) -> None:
    """TERM each child's process group, KILL what is still there after TIMEOUT."""
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
