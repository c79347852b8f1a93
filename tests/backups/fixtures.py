"""A real S3 HTTP endpoint (moto_server) for the backup tests, shared with tests/e2e/test_backups.py."""

import gzip
import io
import socket
import tarfile
import threading
from pathlib import Path

import boto3
import pytest
import requests
from django.test import override_settings

from devstack.s3 import BUCKET, start_s3
from fleet.remote.transport import Result


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    env, stop, _ = start_s3(tmp_path_factory.mktemp("moto"))
    yield env
    stop()


def s3_client(env: dict):
    return boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=env["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
    )


def settings_for(env: dict, **extra) -> dict:
    return {
        "S3_ENDPOINT_URL": env["S3_ENDPOINT_URL"],
        "S3_BUCKET": env["S3_BUCKET"],
        "S3_ACCESS_KEY_ID": env["S3_ACCESS_KEY_ID"],
        "S3_SECRET_ACCESS_KEY": env["S3_SECRET_ACCESS_KEY"],
        "S3_PATH_STYLE": True,
        "S3_CONNECT_TIMEOUT": 2.0,
        "S3_READ_TIMEOUT": 10.0,
        "S3_MAX_ATTEMPTS": 2,
        **extra,
    }


@pytest.fixture
def s3(moto_s3):
    """Empty bucket per test (moto's reset), CHOM's settings pointed at it; yields a boto3 client."""
    requests.post(f"{moto_s3['S3_ENDPOINT_URL']}/moto-api/reset", timeout=5).raise_for_status()
    client = s3_client(moto_s3)
    client.create_bucket(Bucket=BUCKET)
    with override_settings(**settings_for(moto_s3)):
        yield client


def keys(client, prefix: str = "") -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


# --- a transport that plays a VPS: given commands → given outputs -----------------------------------


def gz(text: str) -> bytes:
    return gzip.compress(text.encode())


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ScriptedTransport:
    """Answers by the command's first distinctive word; records every command. `fail_after`
    (bytes) makes a stream call back FAILPOINT once that much was sent (to break S3 mid-way)."""

    def __init__(self, *, release="20240101T000000-abc123", dump=b"", archive=b"", exit_codes=None):
        self.release, self.dump, self.archive = release, dump, archive
        self.exit_codes = exit_codes or {}
        self.commands: list[str] = []
        self.failpoint = None
        self.fail_after = None

    def _kind(self, command) -> str:
        text = command.shell()
        for word in ("readlink", "mariadb-dump", "tar --create"):
            if word in text:
                return word
        return "other"

    def run(self, command, *, stdin=None, timeout=None) -> Result:
        self.commands.append(command.shell())
        if self._kind(command) == "readlink":
            return Result(0, f"releases/{self.release}\n", "")
        return Result(0, "", "")

    def stream_out(self, command, sink, *, timeout=None) -> Result:
        self.commands.append(command.shell())
        kind = self._kind(command)
        data = {"mariadb-dump": self.dump, "tar --create": self.archive}.get(kind, b"")
        sent = 0
        for start in range(0, len(data), 65536):
            chunk = data[start : start + 65536]
            sink(chunk)
            sent += len(chunk)
            if self.fail_after is not None and sent >= self.fail_after and self.failpoint:
                self.failpoint()
                self.failpoint = None
        code = self.exit_codes.get(kind, 0)
        return Result(code, "", "mysqldump: Got error: 1049: Unknown database" if code else "")

    def stream_in(self, command, source, *, timeout=None) -> Result:
        self.commands.append(command.shell())
        while source.read(65536):
            pass
        return Result(0, "", "")


# --- an S3 endpoint that can go away mid-upload -----------------------------------------------------


class BreakableProxy:
    """TCP proxy to the real moto server. `down = True` closes every connection and refuses new
    ones at once: S3 unreachable in the middle of a multipart upload."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.down = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.down:
                    break
                target.sendall(data)
        except OSError:
            pass
        for s in (source, target):
            try:
                s.close()
            except OSError:
                pass

    def go_down(self) -> None:
        self.down = True
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()

    def close(self) -> None:
        self._stopped = True
        self.go_down()
        self._server.close()


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
