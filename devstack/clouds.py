"""Local, stateful HTTP fakes of the cloud APIs (DigitalOcean, Linode, Vultr), speaking their
documented JSON: `make demo`'s cloud accounts and the tests' clouds.

Each fake is a real HTTP server (127.0.0.1 unless told otherwise), so the real provider classes
(and `requests`) are exercised end to end. A fake records every request, lists its catalogue
(regions, sizes, images) and account, refuses what the real API refuses (unknown region, size or
image, an empty image, an unknown SSH key) in that API's error shape, forgets a server on DELETE,
and can be told to fail. Created servers either turn "running" with a documentation address
after `ready_after_gets` GETs, or, given `machines` (a `LocalMachines`), are real local VPSes:
create boots a systemd-nspawn Debian 12 with the SSH key the request named, and the API reports
it running at its address once it answers SSH.
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


class LocalMachines:
    """Real servers behind a fake cloud: each create boots a local nspawn VPS (the `local`
    provider's machinery) on BRIDGE/SUBNET, each delete destroys it."""

    def __init__(self, *, base_dir: str, bridge: str, subnet: str) -> None:
        from fleet.providers.local import LocalProvider

        self.provider = LocalProvider(base_dir=base_dir, bridge=bridge, subnet=subnet, enabled=True)

    def boot(self, name: str, public_key: str) -> str:
        from fleet.providers.base import ServerSpec

        spec = ServerSpec(name=name, region="", size="", image="", ssh_public_key=public_key)
        server = self.provider.create(spec)
        assert server.ip_address
        return server.ip_address

    def destroy(self, name: str) -> None:
        self.provider.destroy(name)


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
    machine: str = ""  # the local VPS's name when a real machine backs the server
    booted: bool = False
    boot_error: str = ""
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
    token: ClassVar[str] = "s3cr3t-t0ken-for-tests"  # noqa: S105 - the fake cloud's own token

    # The catalogue: what the real API lists and accepts (a few real slugs each).
    regions: ClassVar[dict[str, str]]
    sizes: ClassVar[dict[str, str]]
    images: ClassVar[dict[str, str]]

    def __init__(
        self, *, ready_after_gets: int = 2, machines: LocalMachines | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.ready_after_gets = ready_after_gets
        self.machines = machines
        self.requests: list[RecordedRequest] = []
        self.servers: dict[str, FakeServer] = {}
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, 0), _Handler)
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
        if self.machines is not None:
            for server in list(self.servers.values()):
                if server.machine:
                    self.machines.destroy(server.machine)

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

    def add_server(self, server_id: str, request: dict[str, Any], public_key: str = "") -> FakeServer:
        ip = f"203.0.113.{len(self.servers) + 10}"
        self.servers[server_id] = server = FakeServer(server_id, request, ip)
        if self.machines is not None:
            server.machine, server.ip = f"{self.provider_name[:6]}-{server_id[:8]}", ""
            threading.Thread(target=self._boot, args=(server, public_key), daemon=True).start()
        return server

    def _boot(self, server: FakeServer, public_key: str) -> None:
        assert self.machines is not None
        try:
            ip = self.machines.boot(server.machine, public_key)
        except Exception as exc:  # noqa: BLE001 - reported through the API as a dead server
            with self._lock:
                server.boot_error = str(exc)
            return
        with self._lock:
            server.ip, server.booted = ip, True

    def poll(self, server_id: str) -> FakeServer | None:
        server = self.servers.get(server_id)
        if server is not None:
            server.polls += 1
        return server

    def is_ready(self, server: FakeServer) -> bool:
        if self.machines is not None:
            return server.booted
        return server.polls >= self.ready_after_gets

    def delete_server(self, server_id: str) -> bool:
        server = self.servers.pop(server_id, None)
        if server is not None and server.machine and self.machines is not None:
            self.machines.destroy(server.machine)
        return server is not None

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
    regions = {"nyc3": "New York 3", "fra1": "Frankfurt 1", "ams3": "Amsterdam 3"}
    sizes = {"s-1vcpu-1gb": "1 vCPU, 1 GB", "s-1vcpu-2gb": "1 vCPU, 2 GB", "s-2vcpu-4gb": "2 vCPUs, 4 GB"}
    images = {"debian-12-x64": "Debian 12 x64", "ubuntu-24-04-x64": "Ubuntu 24.04 (LTS) x64"}

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
            case "GET", ["account"]:
                return 200, {"account": {"email": "ops@example.com", "status": "active", "droplet_limit": 25}}
            case "GET", ["regions"]:
                regions = [
                    {"slug": slug, "name": name, "available": True, "sizes": list(self.sizes)}
                    for slug, name in self.regions.items()
                ]
                return 200, {"regions": regions, "meta": {"total": len(regions)}}
            case "GET", ["sizes"]:
                sizes = [
                    {"slug": slug, "description": name, "available": True, "regions": list(self.regions)}
                    for slug, name in self.sizes.items()
                ]
                return 200, {"sizes": sizes, "meta": {"total": len(sizes)}}
            case "GET", ["images"]:
                images = [
                    {
                        "id": 100 + i,
                        "slug": slug,
                        "name": name,
                        "distribution": name.split()[0],
                        "public": True,
                    }
                    for i, (slug, name) in enumerate(self.images.items())
                ]
                return 200, {"images": images, "meta": {"total": len(images)}}
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
        if body["region"] not in self.regions:
            return 422, self.error_body(422, "Region is not available")
        if body["size"] not in self.sizes:
            return 422, self.error_body(422, "You specified an invalid size for Droplet creation.")
        if body["image"] not in self.images:
            return 422, self.error_body(422, "You specified an invalid image for Droplet creation.")
        if any(key not in self.ssh_keys for key in body.get("ssh_keys", [])):
            return 422, self.error_body(422, "You specified an invalid SSH key ID.")
        keys = [self.ssh_keys[key]["public_key"] for key in body.get("ssh_keys", [])]
        server = self.add_server(self.new_id(), body, "\n".join(keys))
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
    regions = {"us-east": "Newark, NJ", "eu-central": "Frankfurt, DE"}
    sizes = {"g6-nanode-1": "Nanode 1 GB", "g6-standard-1": "Linode 2 GB", "g6-standard-2": "Linode 4 GB"}
    images = {"linode/debian12": "Debian 12", "linode/ubuntu24.04": "Ubuntu 24.04 LTS"}

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
            case "GET", ["profile"]:
                return 200, {"username": "ops", "email": "ops@example.com"}
            case "GET", ["regions"]:
                return 200, _linode_page(
                    [{"id": k, "label": v, "status": "ok"} for k, v in self.regions.items()]
                )
            case "GET", ["linode", "types"]:
                return 200, _linode_page([{"id": k, "label": v} for k, v in self.sizes.items()])
            case "GET", ["images"]:
                images = [{"id": k, "label": v, "is_public": True} for k, v in self.images.items()]
                return 200, _linode_page(images)
        return self.not_found()

    def not_found(self) -> Reply:
        return 404, self.error_body(404, "Not found")

    def _create(self, body: Any) -> Reply:
        if missing := self.missing(body, "region", "type", "image", "root_pass"):
            return 400, self.error_body(400, f"{missing} is required", field=missing)
        if body["region"] not in self.regions:
            return 400, self.error_body(400, "region is not valid", field="region")
        if body["type"] not in self.sizes:
            return 400, self.error_body(400, "A valid plan type by that ID was not found", field="type")
        if body["image"] not in self.images:
            return 400, self.error_body(400, "image is not valid", field="image")
        if any(s.request.get("label") == body.get("label") for s in self.servers.values()):
            return 400, self.error_body(400, "Label must be unique among your linodes", "label")
        keys = "\n".join(body.get("authorized_keys") or [])
        return 200, self._render(self.add_server(self.new_id(), body, keys))

    def _render(self, server: FakeServer) -> dict[str, Any]:
        instance = {
            "id": int(server.id),
            "label": server.request.get("label"),
            "status": "running" if self.is_ready(server) else "provisioning",
            # Linode assigns the public address at creation, before the instance boots.
            # (A real machine behind the fake has its address once it booted.)
            "ipv4": [server.ip, "192.168.139.20"] if server.ip else ["192.168.139.20"],
            "tags": server.request.get("tags", []),
        }
        return instance | server.overrides


class VultrFake(FakeCloud):
    """https://www.vultr.com/api/: errors are {"error", "status"}."""

    prefix = "/v2"
    provider_name = "vultr"
    create_path = "/instances"
    regions = {"ewr": "New Jersey", "fra": "Frankfurt"}
    sizes = {"vc2-1c-1gb": "1 vCPU, 1 GB", "vc2-1c-2gb": "1 vCPU, 2 GB", "vc2-2c-4gb": "2 vCPUs, 4 GB"}
    images = {"2136": "Debian 12 x64 (bookworm)", "2284": "Ubuntu 24.04 LTS x64"}
    marketplace_images = frozenset({"docker"})  # `image_id`s (marketplace apps), not `os_id`s

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
            case "GET", ["account"]:
                return 200, {"account": {"name": "ops", "email": "ops@example.com", "balance": 0}}
            case "GET", ["regions"]:
                regions = [
                    {"id": k, "city": v, "country": "US" if k == "ewr" else "DE"}
                    for k, v in self.regions.items()
                ]
                return 200, {"regions": regions, "meta": _vultr_meta(regions)}
            case "GET", ["plans"]:
                plans = [{"id": k, "type": "vc2", "locations": list(self.regions)} for k in self.sizes]
                return 200, {"plans": plans, "meta": _vultr_meta(plans)}
            case "GET", ["os"]:
                systems = [
                    {"id": int(k), "name": v, "arch": "x64", "family": v.split()[0].lower()}
                    for k, v in self.images.items()
                ]
                return 200, {"os": systems, "meta": _vultr_meta(systems)}
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
        if body["region"] not in self.regions:
            return 400, self.error_body(400, "Invalid region.")
        if body["plan"] not in self.sizes:
            return 400, self.error_body(400, "Invalid plan.")
        if body.get("os_id") and str(body["os_id"]) not in self.images:
            return 400, self.error_body(400, "Invalid os_id.")
        if body.get("image_id") and body["image_id"] not in self.marketplace_images:
            return 400, self.error_body(400, "Invalid image_id.")
        if any(key not in self.ssh_keys for key in body.get("sshkey_id", [])):
            return 400, self.error_body(400, "Invalid SSH key.")
        keys = "\n".join(self.ssh_keys[key]["ssh_key"] for key in body.get("sshkey_id", []))
        server = self.add_server(str(uuid.uuid4()), body, keys)
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


def _linode_page(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": data, "page": 1, "pages": 1, "results": len(data)}


def _vultr_meta(items: list[Any]) -> dict[str, Any]:
    return {"total": len(items), "links": {"next": "", "prev": ""}}


FAKES: dict[str, type[FakeCloud]] = {
    fake.provider_name: fake for fake in (DigitalOceanFake, LinodeFake, VultrFake)
}
