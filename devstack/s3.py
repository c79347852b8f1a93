"""A local S3 endpoint (moto's server) for `make demo` and the tests: a child process in its own
session, a bucket, and the settings CHOM needs to use it. Data lives in moto's memory only."""

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import boto3

from devstack.processes import free_port, spawn, stop_processes, wait_http

BUCKET = "chom-backups"
ACCESS_KEY = "chom-demo"
SECRET_KEY = "chom-demo-secret"  # noqa: S105 - moto accepts any credentials
READY_TIMEOUT = 20.0


def _moto_binary() -> str:
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.exists() else (shutil.which("moto_server") or "moto_server")


def start_s3(folder: Path, *, bucket: str = BUCKET) -> tuple[dict[str, str], Callable[[], None], list[str]]:
    """Start `moto_server` on a free 127.0.0.1 port. Returns (env, stop, description)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "moto.log"
    proc = spawn([_moto_binary(), "-H", "127.0.0.1", "-p", str(port)], log)
    try:
        wait_http(f"{url}/moto-api/", proc, log, ok=lambda response: True)
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        ).create_bucket(Bucket=bucket)
    except BaseException:
        stop_processes([proc])
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
    return env, lambda: stop_processes([proc]), description
