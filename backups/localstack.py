"""A local S3 endpoint (moto's server) for `make demo` and the tests: a child process in its own
session, a bucket, and the settings CHOM needs to use it. Data lives in moto's memory only."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import requests

BUCKET = "chom-backups"
ACCESS_KEY = "chom-demo"
SECRET_KEY = "chom-demo-secret"  # noqa: S105 - moto accepts any credentials
READY_TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto_binary() -> str:
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.exists() else (shutil.which("moto_server") or "moto_server")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited {proc.returncode}: {log.read_text()[-500:]}")
        try:
            requests.get(f"{url}/moto-api/", timeout=0.2)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise TimeoutError(f"moto_server did not answer on {url} within {READY_TIMEOUT}s")


def start_s3(folder: Path, *, bucket: str = BUCKET) -> tuple[dict[str, str], Callable[[], None], list[str]]:
    """Start `moto_server` on a free 127.0.0.1 port. Returns (env, stop, description)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "moto.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [_moto_binary(), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_ready(url, proc, log)
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        ).create_bucket(Bucket=bucket)
    except BaseException:
        _stop(proc)
        raise
    env = {
        "S3_ENDPOINT_URL": url,
        "S3_BUCKET": bucket,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": ACCESS_KEY,
        "S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "S3_PATH_STYLE": "1",
    }
    description = [f"S3 (moto server, in memory): {url} bucket {bucket}"]
    return env, lambda: _stop(proc), description
