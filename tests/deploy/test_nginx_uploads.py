"""The shipped nginx vhost, run by the real nginx in front of a stand-in for CHOM: the upload route
takes the largest tier's bodies, passes them on as they arrive, and refuses larger ones in the
API's JSON error shape."""

import http.server
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
LARGEST_TIER_BYTES = 2048 * 1024 * 1024

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(
        not shutil.which("nginx") or not shutil.which("openssl"), reason="nginx/openssl missing"
    ),
]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Upstream:
    port: int
    arrived: threading.Event  # a request's headers reached CHOM
    received: list[int]  # body sizes CHOM read


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    state = Upstream(port=0, arrived=threading.Event(), received=[])

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            state.arrived.set()
            remaining, size = int(self.headers.get("Content-Length", "0")), 0
            while remaining:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
                size += len(chunk)
            state.received.append(size)
            body = json.dumps({"size": size}).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def nginx(tmp_path: Path, upstream: Upstream) -> Iterator[int]:
    """The shipped chom.conf on a free port, its upstream the stand-in; yields the HTTPS port."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=chom.test",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (tmp_path / "logs").mkdir()
    https = _port()
    conf = (DEPLOY / "nginx" / "chom.conf").read_text()
    conf = re.sub(r"^\s*listen \[::\]:.*$", "", conf, flags=re.M)
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{_port()};")
    conf = conf.replace("listen 443 ", f"listen 127.0.0.1:{https} ")
    conf = conf.replace("127.0.0.1:8000", f"127.0.0.1:{upstream.port}")
    conf = conf.replace("/etc/letsencrypt/live/chom.example.com/fullchain.pem", str(tmp_path / "cert.pem"))
    conf = conf.replace("/etc/letsencrypt/live/chom.example.com/privkey.pem", str(tmp_path / "key.pem"))
    conf = conf.replace("/var/log/nginx/", f"{tmp_path}/logs/")
    (tmp_path / "chom.conf").write_text(conf)
    temp = "".join(
        f"  {name}_temp_path {tmp_path}/{name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"user root;\ndaemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
        f"events {{}}\nhttp {{\n{temp}  include {tmp_path}/chom.conf;\n}}\n"
    )
    proc = subprocess.Popen(
        [
            "nginx",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-e",
            f"{tmp_path}/logs/error.log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: _answers(https) or proc.poll() is not None, timeout=10, what="nginx listening")
        assert proc.poll() is None, proc.stderr.read().decode()
        yield https
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _connect(port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))


def _headers(length: int) -> bytes:
    return (
        "POST /api/v1/sites/7/releases HTTP/1.1\r\nHost: chom.example.com\r\n"
        f"Content-Type: application/gzip\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


def _answer(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def test_it_refuses_an_upload_above_the_largest_tier_in_the_json_error_shape(nginx, upstream):
    with _connect(nginx) as sock:
        sock.sendall(_headers(LARGEST_TIER_BYTES + 1) + b"\x1f\x8b" + b"x" * 1000)
        status, headers, body = _answer(sock)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "upload_too_large"
    assert not upstream.arrived.is_set()  # CHOM never saw it


def test_it_passes_an_upload_on_as_it_arrives(nginx, upstream):
    size = 3 * 1024 * 1024
    with _connect(nginx) as sock:
        sock.sendall(_headers(size) + b"\x1f\x8b" + b"x" * (1024 * 1024 - 2))
        # nginx's default would first spool the whole body to disk: CHOM would see nothing yet.
        assert upstream.arrived.wait(timeout=5), "the body was buffered, not streamed"
        time.sleep(0.1)
        sock.sendall(b"y" * (size - 1024 * 1024))
        status, _, body = _answer(sock)
    assert (status, json.loads(body)) == (202, {"size": size})
    assert upstream.received == [size]
