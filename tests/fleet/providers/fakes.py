"""Local, stateful HTTP fakes of the cloud APIs, speaking their documented JSON.

Each fake is a real HTTP server on 127.0.0.1, so the real provider classes (and `requests`)
are exercised end to end. A fake records every request, turns a created server "running" with
an IP after `ready_after_gets` GETs, forgets it on DELETE, and can be told to fail.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote, urlsplit

Reply = tuple[int, Any]

KNOWN_REGIONS = frozenset({"nyc3", "us-east", "ewr"})
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPGEOsgxA2Du8Q+YLh+pqaihpxd3rhWQyoqoaXJZ3uNh chom@test"
OTHER_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDdLlWalnkBBk0/IgowxSTqKbB/XSJWGf+RA6n+wxDL x@test"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeServer:
    id: str
    request: dict[str, Any]
    ip: str
    polls: int = 0
    # Provider-vocabulary fields forced into the rendered JSON, e.g. {"status": "off"}.
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Failure:
    status: int
    times: int
    method: str | None
    path: str | None
    headers: dict[str, str]
    message: str

    def matches(self, request: RecordedRequest) -> bool:
        return self.method in (None, request.method) and self.path in (None, request.path)


class FakeClock:
    """Stands in for `time.monotonic`/`time.sleep`: sleeping advances time instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeCloud:
    """Shared machinery; subclasses implement one provider's routes and JSON shapes."""

    prefix: ClassVar[str]
    provider_name: ClassVar[str]
    create_path: ClassVar[str]
    token: ClassVar[str] = "s3cr3t-t0ken-for-tests"

    def __init__(self, *, ready_after_gets: int = 2) -> None:
        self.ready_after_gets = ready_after_gets
        self.requests: list[RecordedRequest] = []
        self.servers: dict[str, FakeServer] = {}
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    def server_path(self, server_id: str) -> str:
        return f"{self.create_path}/{server_id}"

    # --- what tests configure and inspect ---------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        retry_after: str | None = None,
        message: str = "injected failure",
    ) -> None:
        """Answer the next `times` matching requests with `status` in the provider's shape."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self._failures.append(_Failure(status, times, method, path, headers, message))

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def assert_requested(self, method: str, path: str) -> RecordedRequest:
        """The last matching request; fails listing what was requested instead."""
        matching = self.requests_to(method, path)
        if not matching:
            seen = ", ".join(f"{r.method} {r.path}" for r in self.requests) or "nothing"
            raise AssertionError(f"expected {method} {path}; requests were: {seen}")
        return matching[-1]

    def assert_not_requested(self, method: str, path: str) -> None:
        if self.requests_to(method, path):
            raise AssertionError(f"expected no {method} {path}")

    # --- request handling -------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(request)
            failure = self._take_failure(request)
            if failure is not None:
                return (
                    failure.status,
                    self.error_body(failure.status, failure.message),
                    failure.headers,
                )
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return 401, self.error_body(401, "Unable to authenticate you"), {}
            status, payload = self.route(request.method, request.path, request)
            return status, payload, {}

    def _take_failure(self, request: RecordedRequest) -> _Failure | None:
        for failure in self._failures:
            if failure.matches(request):
                failure.times -= 1
                if failure.times == 0:
                    self._failures.remove(failure)
                return failure
        return None

    def route(self, method: str, path: str, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    def error_body(self, status: int, message: str, field: str | None = None) -> Any:
        raise NotImplementedError

    def not_found(self) -> Reply:
        return 404, self.error_body(404, "The resource you were accessing could not be found.")

    # --- shared server state ----------------------------------------------------------------

    def new_id(self) -> str:
        return str(next(self._ids))

    def add_server(self, server_id: str, request: dict[str, Any]) -> FakeServer:
        ip = f"203.0.113.{len(self.servers) + 10}"
        self.servers[server_id] = server = FakeServer(server_id, request, ip)
        return server

    def poll(self, server_id: str) -> FakeServer | None:
        server = self.servers.get(server_id)
        if server is not None:
            server.polls += 1
        return server

    def is_ready(self, server: FakeServer) -> bool:
        return server.polls >= self.ready_after_gets

    def delete_server(self, server_id: str) -> bool:
        return self.servers.pop(server_id, None) is not None

    @staticmethod
    def missing(body: Any, *names: str) -> str | None:
        present = body if isinstance(body, dict) else {}
        return next((name for name in names if not present.get(name)), None)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_GET

    def _dispatch(self) -> None:
        fake: FakeCloud = self.server.fake  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = RecordedRequest(
            method=self.command,
            path=unquote(url.path).removeprefix(fake.prefix),
            query=parse_qs(url.query),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=json.loads(raw) if raw else None,
        )
        status, payload, headers = fake.handle(request)
        self._reply(status, payload, headers)

    def _reply(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Keep test output quiet; the fake records requests itself."""


def md5_fingerprint(public_key: str) -> str:
    digest = hashlib.md5(base64.b64decode(public_key.split()[1]), usedforsecurity=False)
    hexed = digest.hexdigest()
    return ":".join(hexed[i : i + 2] for i in range(0, len(hexed), 2))


class DigitalOceanFake(FakeCloud):
    """https://docs.digitalocean.com/reference/api/: errors are {"id", "message"}."""

    prefix = "/v2"
    provider_name = "digitalocean"
    create_path = "/droplets"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssh_keys: dict[int, dict[str, Any]] = {}

    def error_body(self, status: int, message: str, field: str | None = None) -> Any:
        ids = {401: "unauthorized", 404: "not_found", 422: "unprocessable_entity"}
        return {"id": ids.get(status, "error"), "message": message}

    def route(self, method: str, path: str, request: RecordedRequest) -> Reply:
        match method, path.strip("/").split("/"):
            case "POST", ["account", "keys"]:
                return self._create_key(request.body)
            case "GET", ["account", "keys", ident]:
                return self._get_key(ident)
            case "POST", ["droplets"]:
                return self._create_droplet(request.body)
            case "GET", ["droplets", ident]:
                server = self.poll(ident)
                return (200, {"droplet": self._render(server)}) if server else self.not_found()
            case "DELETE", ["droplets", ident]:
                return (204, None) if self.delete_server(ident) else self.not_found()
        return self.not_found()

    def add_ssh_key(self, public_key: str, name: str = "existing") -> int:
        key_id = len(self.ssh_keys) + 512189
        fingerprint = md5_fingerprint(public_key)
        self.ssh_keys[key_id] = {
            "id": key_id,
            "fingerprint": fingerprint,
            "public_key": public_key,
            "name": name,
        }
        return key_id

    def _create_key(self, body: Any) -> Reply:
        if missing := self.missing(body, "name", "public_key"):
            return 422, self.error_body(422, f"{missing} is required")
        if any(k["public_key"] == body["public_key"] for k in self.ssh_keys.values()):
            return 422, self.error_body(422, "SSH Key is already in use on your account")
        key_id = self.add_ssh_key(body["public_key"], body["name"])
        return 201, {"ssh_key": self.ssh_keys[key_id]}

    def _get_key(self, ident: str) -> Reply:
        for key in self.ssh_keys.values():
            if ident in (str(key["id"]), key["fingerprint"]):
                return 200, {"ssh_key": key}
        return self.not_found()

    def _create_droplet(self, body: Any) -> Reply:
        if missing := self.missing(body, "name", "region", "size", "image"):
            return 422, self.error_body(422, f"You must specify {missing}.")
        if body["region"] not in KNOWN_REGIONS:
            return 422, self.error_body(422, "Region is not available")
        if any(key not in self.ssh_keys for key in body.get("ssh_keys", [])):
            return 422, self.error_body(422, "You specified an invalid SSH key ID.")
        server = self.add_server(self.new_id(), body)
        return 202, {"droplet": self._render(server), "links": {"actions": []}}

    def _render(self, server: FakeServer) -> dict[str, Any]:
        ready = self.is_ready(server)
        v4 = [
            {"ip_address": "10.132.0.5", "type": "private"},
            {"ip_address": server.ip, "type": "public"},
        ]
        droplet = {
            "id": int(server.id),
            "name": server.request["name"],
            "status": "active" if ready else "new",
            "networks": {"v4": v4 if ready else [], "v6": []},
            "tags": server.request.get("tags", []),
        }
        return droplet | server.overrides


class LinodeFake(FakeCloud):
    """https://techdocs.akamai.com/linode-api/: errors are {"errors": [{"reason", "field"}]}."""

    prefix = "/v4"
    provider_name = "linode"
    create_path = "/linode/instances"

    def error_body(self, status: int, message: str, field: str | None = None) -> Any:
        error = {"reason": message} | ({"field": field} if field else {})
        return {"errors": [error]}

    def route(self, method: str, path: str, request: RecordedRequest) -> Reply:
        match method, path.strip("/").split("/"):
            case "POST", ["linode", "instances"]:
                return self._create(request.body)
            case "GET", ["linode", "instances", ident]:
                server = self.poll(ident)
                return (200, self._render(server)) if server else self.not_found()
            case "DELETE", ["linode", "instances", ident]:
                return (200, {}) if self.delete_server(ident) else self.not_found()
        return self.not_found()

    def not_found(self) -> Reply:
        return 404, self.error_body(404, "Not found")

    def _create(self, body: Any) -> Reply:
        if missing := self.missing(body, "region", "type", "image", "root_pass"):
            return 400, self.error_body(400, f"{missing} is required", field=missing)
        if body["region"] not in KNOWN_REGIONS:
            return 400, self.error_body(400, "region is not valid", field="region")
        if any(s.request.get("label") == body.get("label") for s in self.servers.values()):
            return 400, self.error_body(400, "Label must be unique among your linodes", "label")
        return 200, self._render(self.add_server(self.new_id(), body))

    def _render(self, server: FakeServer) -> dict[str, Any]:
        instance = {
            "id": int(server.id),
            "label": server.request.get("label"),
            "status": "running" if self.is_ready(server) else "provisioning",
            # Linode assigns the public address at creation, before the instance boots.
            "ipv4": [server.ip, "192.168.139.20"],
            "tags": server.request.get("tags", []),
        }
        return instance | server.overrides


class VultrFake(FakeCloud):
    """https://www.vultr.com/api/: errors are {"error", "status"}."""

    prefix = "/v2"
    provider_name = "vultr"
    create_path = "/instances"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssh_keys: dict[str, dict[str, Any]] = {}

    def error_body(self, status: int, message: str, field: str | None = None) -> Any:
        return {"error": message, "status": status}

    def route(self, method: str, path: str, request: RecordedRequest) -> Reply:
        match method, path.strip("/").split("/"):
            case "GET", ["ssh-keys"]:
                return 200, self._list_keys(request)
            case "POST", ["ssh-keys"]:
                return self._create_key(request.body)
            case "POST", ["instances"]:
                return self._create(request.body)
            case "GET", ["instances", ident]:
                server = self.poll(ident)
                return (200, {"instance": self._render(server)}) if server else self.not_found()
            case "DELETE", ["instances", ident]:
                return (204, None) if self.delete_server(ident) else self.not_found()
        return self.not_found()

    def not_found(self) -> Reply:
        return 404, self.error_body(404, "Not found")

    def add_ssh_key(self, public_key: str, name: str = "existing") -> str:
        key_id = str(uuid.uuid4())
        self.ssh_keys[key_id] = {"id": key_id, "name": name, "ssh_key": public_key}
        return key_id

    def _list_keys(self, request: RecordedRequest) -> dict[str, Any]:
        """Pages of one key each, so clients must follow `meta.links.next`."""
        keys = list(self.ssh_keys.values())
        index = int(request.query.get("cursor", ["0"])[0])
        page = keys[index : index + 1]
        following = str(index + 1) if index + 1 < len(keys) else ""
        meta = {"total": len(keys), "links": {"next": following, "prev": ""}}
        return {"ssh_keys": page, "meta": meta}

    def _create_key(self, body: Any) -> Reply:
        if missing := self.missing(body, "name", "ssh_key"):
            return 400, self.error_body(400, f"Missing {missing}")
        key_id = self.add_ssh_key(body["ssh_key"], body["name"])
        return 201, {"ssh_key": self.ssh_keys[key_id]}

    def _create(self, body: Any) -> Reply:
        if missing := self.missing(body, "region", "plan"):
            return 400, self.error_body(400, f"Missing {missing}")
        if not (body.get("os_id") or body.get("image_id")):
            return 400, self.error_body(400, "You must provide an os_id, image_id or app_id")
        if body["region"] not in KNOWN_REGIONS:
            return 400, self.error_body(400, "Invalid region.")
        if any(key not in self.ssh_keys for key in body.get("sshkey_id", [])):
            return 400, self.error_body(400, "Invalid SSH key.")
        server = self.add_server(str(uuid.uuid4()), body)
        return 202, {"instance": self._render(server)}

    def _render(self, server: FakeServer) -> dict[str, Any]:
        ready = self.is_ready(server)
        instance = {
            "id": server.id,
            "label": server.request.get("label"),
            "main_ip": server.ip if ready else "0.0.0.0",  # noqa: S104 - Vultr's "no IP yet"
            "status": "active" if ready else "pending",
            "power_status": "running",
            "server_status": "ok" if ready else "installingbooting",
            "tags": server.request.get("tags", []),
        }
        return instance | server.overrides


FAKES: dict[str, type[FakeCloud]] = {
    fake.provider_name: fake for fake in (DigitalOceanFake, LinodeFake, VultrFake)
}
