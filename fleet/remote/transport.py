"""One SSH transport interface (pyinfra's connectors/base.py idea) and its paramiko implementation.

The transport is created per operation and passed in explicitly; it keeps one connection for
the operation's lifetime (`with transport:`), pins the host key, and turns every failure into a
`TransportError` whose `transient` flag says whether retrying can help.
"""

import base64
import hashlib
import io
import logging
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import paramiko

from fleet.remote.commands import Command

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 120.0
CONNECT_ATTEMPTS = 3


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def stderr_tail(self, lines: int = 5) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-lines:])


class TransportError(Exception):
    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class HostKeyMismatch(TransportError):
    """The server presented a different key than the one pinned: possible interception."""

    def __init__(self, message: str):
        super().__init__(message, transient=False)


class Transport(Protocol):
    def run(
        self, command: Command, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> Result: ...

    def put_file(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None: ...

    def get_file(self, remote_path: str) -> bytes: ...

    def stream_out(
        self, command: Command, sink: Callable[[bytes], None], *, timeout: float | None = None
    ) -> Result: ...

    def stream_in(self, command: Command, source: BinaryIO, *, timeout: float | None = None) -> Result: ...

    def close(self) -> None: ...


def host_key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def host_key_fingerprint(line: str) -> str:
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class HostKeyScanError(TransportError):
    """The server's host key could not be read (nothing listens, not SSH, too slow)."""

    def __init__(self, message: str):
        super().__init__(message, transient=True)


def host_key_scan(host: str, port: int = 22, timeout: float = CONNECT_TIMEOUT) -> str:
    """The host key HOST:PORT presents, as a pinnable line ("ssh-ed25519 AAAA…"). Only the key
    exchange runs: nothing is authenticated, so nothing is logged in to or trusted yet. The key
    type is the one a later `ParamikoTransport` negotiates (both use paramiko's preference)."""
    where = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise HostKeyScanError(f"cannot reach {where}: {exc.strerror or exc}") from exc
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.handshake_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        return host_key_line(transport.get_remote_server_key())
    except (OSError, EOFError, paramiko.SSHException) as exc:
        detail = str(exc) or type(exc).__name__
        raise HostKeyScanError(f"{where} did not answer as an SSH server: {detail}") from exc
    finally:
        transport.close()
        sock.close()


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    """Trust on first use (records the key), then refuse any other key."""

    def __init__(self, pinned: str | None):
        self.pinned = pinned
        self.seen: str | None = None

    def missing_host_key(self, client, hostname, key) -> None:
        line = host_key_line(key)
        if self.pinned and line != self.pinned:
            raise HostKeyMismatch(
                f"host key of {hostname} changed: expected {host_key_fingerprint(self.pinned)}, "
                f"got {host_key_fingerprint(line)}; refusing to connect "
                "(re-pin only if the server was rebuilt)"
            )
        self.seen = line


class ParamikoTransport:
    def __init__(
        self,
        *,
        host: str,
        port: int = 22,
        username: str = "root",
        private_key: str,
        pinned_host_key: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
    ):
        self.host, self.port, self.username = host, port, username
        self._key = paramiko.Ed25519Key.from_private_key(io.StringIO(private_key))
        self._policy = _PinnedHostKey(pinned_host_key)
        self.connect_timeout, self.command_timeout = connect_timeout, command_timeout
        self._client: paramiko.SSHClient | None = None

    @property
    def host_key(self) -> str | None:
        """The key the server presented (to pin after a first connection)."""
        return self._policy.seen or self._policy.pinned

    def __enter__(self) -> "ParamikoTransport":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        if (
            self._client is not None
            and self._client.get_transport()
            and self._client.get_transport().is_active()
        ):
            return
        last: Exception | None = None
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                self._client = self._open()
                return
            except HostKeyMismatch:
                raise
            except paramiko.AuthenticationException as exc:
                raise TransportError(
                    f"SSH authentication to {self.username}@{self.host}:{self.port} failed: "
                    "is CHOM's fleet public key in authorized_keys?",
                    transient=False,
                ) from exc
            except (OSError, paramiko.SSHException, EOFError) as exc:
                last = exc
                time.sleep(min(2.0, 0.3 * attempt))
        raise TransportError(f"cannot connect to {self.host}:{self.port}: {last}", transient=True) from last

    def _open(self) -> paramiko.SSHClient:
        # paramiko leaves Nagle on: each command would wait ~40 ms for delayed ACKs.
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(self._policy)
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.username,
                pkey=self._key,
                sock=sock,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except BaseException:
            client.close()
            sock.close()
            raise
        return client

    def run(self, command: Command, *, stdin: bytes | None = None, timeout: float | None = None) -> Result:
        out = bytearray()
        result = self._run_session(command, out.extend, self._feed_bytes(stdin), timeout)
        return Result(result.exit_code, out.decode(errors="replace"), result.stderr)

    def stream_out(
        self, command: Command, sink: Callable[[bytes], None], *, timeout: float | None = None
    ) -> Result:
        """Run COMMAND and hand its stdout to SINK chunk by chunk (bounded memory: backups)."""
        return self._run_session(command, sink, self._feed_bytes(None), timeout)

    def stream_in(self, command: Command, source: BinaryIO, *, timeout: float | None = None) -> Result:
        """Run COMMAND with SOURCE (read in chunks) as its stdin (bounded memory: restores)."""
        return self._run_session(command, lambda chunk: None, self._feed_file(source), timeout)

    def _run_session(self, command: Command, sink, feed, timeout: float | None) -> Result:
        self.connect()
        timeout = timeout or self.command_timeout
        try:
            exit_code, stderr = self._session(command, sink, feed, timeout)
        except TimeoutError as exc:
            raise TransportError(
                f"'{command.masked()}' timed out after {timeout:.0f}s", transient=True
            ) from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self.close()
            raise TransportError(
                f"SSH channel to {self.host} broke during '{command}': {exc}", transient=True
            ) from exc
        return Result(exit_code, "", stderr.decode(errors="replace"))

    @staticmethod
    def _feed_bytes(data: bytes | None):
        def feed(channel: paramiko.Channel) -> None:
            if data:
                channel.sendall(data)

        return feed

    @staticmethod
    def _feed_file(source: BinaryIO | None):
        def feed(channel: paramiko.Channel) -> None:
            while source is not None and (chunk := source.read(256 * 1024)):
                channel.sendall(chunk)

        return feed

    def _session(self, command: Command, sink, feed, timeout: float) -> tuple[int, bytes]:
        channel = self._client.get_transport().open_session(timeout=self.connect_timeout)
        try:
            channel.settimeout(timeout)
            channel.exec_command(command.shell())
            feed(channel)
            channel.shutdown_write()
            stderr = self._drain(channel, time.monotonic() + timeout, sink)
            return channel.recv_exit_status(), stderr
        finally:
            channel.close()

    @staticmethod
    def _drain(channel: paramiko.Channel, deadline: float, sink: Callable[[bytes], None]) -> bytes:
        """Read stdout and stderr together, so neither can fill its window and stall the other."""
        err = bytearray()
        while True:
            if channel.recv_ready():
                sink(channel.recv(65536))
            elif channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            elif channel.eof_received or channel.closed:
                # Not the exit status: sshd may send it before the last of the output. EOF comes
                # after all data; take what landed between the checks above and it.
                while channel.recv_ready():
                    sink(channel.recv(65536))
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                return bytes(err)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                # paramiko channels are selectable (both streams signal the same pipe).
                select.select([channel], [], [], min(remaining, 0.5))

    def put_file(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        self.connect()
        try:
            with self._client.open_sftp() as sftp:
                tmp = f"{remote_path}.chom-tmp"
                with sftp.open(tmp, "wb") as handle:
                    handle.write(data)
                sftp.chmod(tmp, mode)
                sftp.posix_rename(tmp, remote_path)
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(
                f"upload of {remote_path} to {self.host} failed: {exc}", transient=True
            ) from exc

    def get_file(self, remote_path: str) -> bytes:
        self.connect()
        try:
            with self._client.open_sftp() as sftp, sftp.open(remote_path, "rb") as handle:
                return handle.read()
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(
                f"download of {remote_path} from {self.host} failed: {exc}", transient=False
            ) from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
