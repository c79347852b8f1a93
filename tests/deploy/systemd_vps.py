"""What tests/deploy/test_systemd_deploy.py needs around a local VPS (real systemd as PID 1) to
install CHOM on it the way deploy/README.md tells an operator: Debian packages the VPS cannot
download itself, a TCP relay to this machine's PostgreSQL and Redis, SSH as root, and a request
loop that goes through the VPS's nginx over TLS."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import io
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.deploy import harness

# deploy/README.md's `apt-get install` line, less what the VPS image already has (git, curl,
# nginx, logrotate) and less PostgreSQL/Redis servers (this machine's serve, through the relay).
# Debian 12's python3 is 3.11: no deadsnakes PPA, python3.11-venv brings ensurepip.
VPS_PACKAGES = ("python3.11-venv", "postgresql-client", "redis-tools")
_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ", re.M)


def vps_debs(image: Path) -> Path:
    """The .debs that `apt-get install VPS_PACKAGES` needs on IMAGE (which has no route to a
    mirror), downloaded on this machine once and kept in ~/.cache like the wheelhouse. apt
    resolves them against the image's own dpkg status with this machine's package lists."""
    status_file = f"Dir::State::status={image}/var/lib/dpkg/status"
    simulated = subprocess.run(
        ["apt-get", "-s", "-q", "--no-install-recommends", "-o", status_file, "install", *VPS_PACKAGES],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    wanted = sorted(f"{name}={version}" for name, version in _INST.findall(simulated.stdout))
    if simulated.returncode != 0 or not wanted:
        raise RuntimeError(f"apt-get cannot resolve {VPS_PACKAGES} (run apt-get update?): {simulated.stderr}")
    key = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chom-deploy-tests"
    target = cache / f"debs-{key}"
    if not target.exists():
        partial = cache / f"debs-{key}.{os.getpid()}"
        partial.mkdir(parents=True)
        partial.chmod(0o777)  # apt downloads as _apt
        subprocess.run(["apt-get", "download", "-q", *wanted], cwd=partial, check=True, capture_output=True,
                       timeout=600)  # fmt: skip
        for deb in partial.iterdir():  # "5%3a7.0" (an epoch): apt would decode the name again
            deb.rename(deb.with_name(re.sub(r"_\d+%3a", "_", deb.name)))
        partial.rename(target)
    return target


def vps_wheelhouse(python: str = "/usr/bin/python3.11") -> Path:
    """harness.wheelhouse() completed for the VPS's interpreter: Debian's python3.11 (3.11.2)
    needs wheels that a newer 3.11 does not (redis wants async-timeout before 3.11.3), so pip of
    this machine's Debian python3.11, the same build as the VPS's, resolves requirements.txt
    again, taking what it can from the wheelhouse."""
    base = harness.wheelhouse()
    probe = [python, "-c", "import platform; print(platform.python_version())"]
    version = subprocess.run(probe, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    target = base.with_name(f"{base.name}-py{version}")
    if not target.exists():
        tools = base.with_name(f"pip-py{version}")
        if not (tools / "bin" / "pip").exists():
            subprocess.run([python, "-m", "venv", "--clear", str(tools)], check=True, timeout=120)
        partial = base.with_name(f"{target.name}.{os.getpid()}")
        requirements = str(harness.ROOT / "requirements.txt")
        pip = [str(tools / "bin" / "pip"), "wheel", "-q", "-r", requirements, "--find-links", str(base)]
        subprocess.run([*pip, "-w", str(partial)], check=True, timeout=600)
        partial.rename(target)
    return target


# --- this machine's PostgreSQL and Redis, seen from the VPS -----------------------------------------
class TcpRelay:
    """Accepts on HOST (the bridge's gateway: only this run's VPSes reach it) and forwards each
    connection to 127.0.0.1:TARGET_PORT, for as long as the test runs. Stop closes everything."""

    def __init__(self, host: str, target_port: int):
        self.host, self.target_port, self.port = host, target_port, 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> TcpRelay:
        self._thread.start()
        serve = asyncio.start_server(self._handle, self.host, 0)
        self._server = asyncio.run_coroutine_threadsafe(serve, self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            connect = asyncio.open_connection("127.0.0.1", self.target_port)
            up_reader, up_writer = await asyncio.wait_for(connect, 5)
        except (TimeoutError, OSError):
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _shutdown(self) -> None:
        if self._server:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


# --- SSH as root ------------------------------------------------------------------------------------
def new_ssh_key() -> tuple[str, paramiko.Ed25519Key]:
    """An ed25519 key as (OpenSSH private text, paramiko key)."""
    private = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode()
    )
    return private, paramiko.Ed25519Key.from_private_key(io.StringIO(private))


def public_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


class Ssh:
    """Root on the VPS, host key pinned. Each command gets its own channel (threads may share)."""

    def __init__(self, ip: str, client_key: paramiko.PKey, host_key: paramiko.PKey):
        self.client = paramiko.SSHClient()
        self.client.get_host_keys().add(ip, host_key.get_name(), host_key)
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.client.connect(ip, username="root", pkey=client_key, timeout=10, banner_timeout=10,
                            auth_timeout=10, allow_agent=False, look_for_keys=False)  # fmt: skip
        self.client.get_transport().set_keepalive(15)

    def run(self, command: str, *, timeout: float = 120, check: bool = True) -> tuple[int, str]:
        """Run COMMAND (a shell line: every value in it is a constant of the test or quoted) and
        return (exit status, stdout and stderr interleaved)."""
        channel = self.client.get_transport().open_session(timeout=10)
        channel.set_combine_stderr(True)
        channel.settimeout(timeout)
        channel.exec_command(command)
        chunks, deadline = [], time.monotonic() + timeout
        try:
            while True:
                data = channel.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{command!r} still running after {timeout}s")
            status = channel.recv_exit_status()
        except TimeoutError as exc:
            raise TimeoutError(f"{command!r} still running after {timeout}s") from exc
        finally:
            channel.close()
        output = b"".join(chunks).decode(errors="replace")
        if check and status != 0:
            raise AssertionError(f"{command!r} exited {status}:\n{output[-4000:]}")
        return status, output

    def close(self) -> None:
        self.client.close()


# --- HTTPS through the VPS's nginx ------------------------------------------------------------------
class _Https(http.client.HTTPSConnection):
    """Connects to IP but speaks TLS for HOST (SNI and certificate check), as a browser that
    resolved HOST to IP would."""

    def __init__(self, ip: str, host: str, context: ssl.SSLContext, timeout: float):
        super().__init__(host, 443, context=context, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class Front:
    """CHOM as its users reach it: https://HOST/ through nginx on the VPS at IP."""

    def __init__(self, ip: str, host: str, cafile: Path):
        self.ip, self.host = ip, host
        self.context = ssl.create_default_context(cafile=str(cafile))

    def request(self, method: str, path: str, *, token: str | None = None, body: dict | None = None,
                timeout: float = 10) -> tuple[int, bytes]:  # fmt: skip
        conn = _Https(self.ip, self.host, self.context, timeout)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def json(self, path: str, *, token: str) -> dict:
        status, body = self.request("GET", path, token=token)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)


class FrontLoop(threading.Thread):
    """GET /health, GET /api/v1/tenant and POST /api/v1/tokens (a write: a token row and an audit
    row) in turn through nginx at RATE requests/s, until stopped or MAX_SECONDS. Every answer but
    the expected one (200, 200, 201) and every connection error is recorded, by path."""

    PLAN = (("GET", "/health", 200), ("GET", "/api/v1/tenant", 200), ("POST", "/api/v1/tokens", 201))

    def __init__(self, front: Front, token: str, *, rate: float = 12, max_seconds: float = 180):
        super().__init__(daemon=True)
        self.front, self.token, self.interval, self.max_seconds = front, token, 1 / rate, max_seconds
        self.ok: dict[str, int] = {}
        self.failures: list[tuple[str, str]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        deadline, n = time.monotonic() + self.max_seconds, 0
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            method, path, expected = self.PLAN[n % len(self.PLAN)]
            body = {"name": f"loop-{n}", "scope": "read"} if method == "POST" else None
            n += 1
            try:
                status, answer = self.front.request(method, path, token=self.token, body=body)
                if status == expected:
                    self.ok[path] = self.ok.get(path, 0) + 1
                else:
                    self.failures.append((path, f"{method} {status} {answer[:200]!r}"))
            except OSError as exc:
                self.failures.append((path, f"{method} {exc!r}"))
            self._stop_event.wait(self.interval)

    def stop(self) -> FrontLoop:
        self._stop_event.set()
        self.join(timeout=20)
        return self

    def failed(self, *, except_paths: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        return [f for f in self.failures if f[0] not in except_paths]

    @property
    def total(self) -> int:
        return sum(self.ok.values()) + len(self.failures)

    def summary(self) -> str:
        ok = ", ".join(f"{path} {n}" for path, n in sorted(self.ok.items()))
        return f"{self.total} requests through nginx ({ok} ok), {len(self.failures)} failed"
