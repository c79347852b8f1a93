"""Local, stateful HTTP fakes of two DNS providers' APIs (DigitalOcean DNS, Cloudflare DNS),
speaking their documented JSON: `make demo`'s DNS accounts and the tests' DNS providers.

Each fake is a real HTTP server on 127.0.0.1 that checks the bearer token, knows a set of zones,
creates, lists and deletes TXT records, refuses what the real API refuses (unknown zone, missing
field) in that API's error shape, and can be told to fail. Given CHALLTESTSRV (the management URL
of pebble-challtestsrv, the DNS server the local ACME CA validates through), every TXT record
the fake holds is also served there, so the local ACME CA really validates DNS-01 challenges
against what CHOM wrote through the provider API."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote, urlsplit

import requests

Reply = tuple[int, Any]


@dataclass(frozen=True)
class DnsRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeRecord:
    id: str
    zone: str
    type: str
    name: str  # fully qualified, no trailing dot
    value: str
    ttl: int


class FakeDnsProvider:
    """Shared machinery; subclasses implement one provider's routes and JSON shapes."""

    prefix: ClassVar[str]
    token: ClassVar[str] = "dns-t0ken-for-tests"  # noqa: S105 - the fake's own token

    def __init__(self, *, zones: tuple[str, ...] = ("example.test",), challtestsrv: str = "") -> None:
        self.challtestsrv = challtestsrv.rstrip("/")
        self.zones: dict[str, str] = {zone: uuid.uuid4().hex for zone in zones}  # name -> id
        self.records: dict[str, FakeRecord] = {}
        self.requests: list[DnsRequest] = []
        self._failures: list[list[Any]] = []  # [status, times, method, message]
        self._ids = itertools.count(3352896)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    # --- what tests configure and inspect ---------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, method: str | None = None, message: str = "") -> None:
        with self._lock:
            self._failures.append([status, times, method, message or "injected failure"])

    def txt_values(self, name: str) -> list[str]:
        with self._lock:
            return [r.value for r in self.records.values() if r.type == "TXT" and r.name == name]

    # --- request handling -------------------------------------------------------------------

    def handle(self, request: DnsRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            for failure in self._failures:
                if failure[2] in (None, request.method):
                    failure[1] -= 1
                    if failure[1] == 0:
                        self._failures.remove(failure)
                    return failure[0], self.error_body(failure[0], failure[3])
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return self.unauthorized()
            return self.route(request)

    def route(self, request: DnsRequest) -> Reply:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        raise NotImplementedError

    def unauthorized(self) -> Reply:
        raise NotImplementedError

    def add_record(self, zone: str, type_: str, name: str, value: str, ttl: int) -> FakeRecord:
        record = FakeRecord(str(next(self._ids)), zone, type_, name.rstrip(".").lower(), value, ttl)
        self.records[record.id] = record
        self._publish(record.name)
        return record

    def remove_record(self, record_id: str) -> FakeRecord | None:
        record = self.records.pop(record_id, None)
        if record is not None:
            self._publish(record.name)
        return record

    def _publish(self, name: str) -> None:
        """challtestsrv serves exactly the TXT values this fake holds for NAME."""
        if not self.challtestsrv:
            return
        host = f"{name}."
        requests.post(f"{self.challtestsrv}/clear-txt", json={"host": host}, timeout=5).raise_for_status()
        for record in self.records.values():
            if record.type == "TXT" and record.name == name:
                body = {"host": host, "value": record.value}
                requests.post(f"{self.challtestsrv}/set-txt", json=body, timeout=5).raise_for_status()


class DigitalOceanDnsFake(FakeDnsProvider):
    """DigitalOcean API v2 domains and domain records; errors are {"id", "message"}."""

    prefix = "/v2"
    _ERROR_IDS: ClassVar[dict[int, str]] = {
        401: "unauthorized",
        404: "not_found",
        422: "unprocessable_entity",
        429: "too_many_requests",
    }

    def error_body(self, status: int, message: str) -> Any:
        return {"id": self._ERROR_IDS.get(status, "server_error"), "message": message}

    def unauthorized(self) -> Reply:
        return 401, self.error_body(401, "Unable to authenticate you")

    def _not_found(self) -> Reply:
        return 404, self.error_body(404, "The resource you were accessing could not be found.")

    def _record_json(self, record: FakeRecord) -> dict[str, Any]:
        relative = "@" if record.name == record.zone else record.name.removesuffix("." + record.zone)
        return {
            "id": int(record.id),
            "type": record.type,
            "name": relative,
            "data": record.value,
            "priority": None,
            "port": None,
            "ttl": record.ttl,
            "weight": None,
            "flags": None,
            "tag": None,
        }

    def route(self, request: DnsRequest) -> Reply:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["domains"] and request.method == "GET":
            domains = [{"name": z, "ttl": 1800, "zone_file": ""} for z in sorted(self.zones)]
            return 200, {"domains": domains, "links": {}, "meta": {"total": len(domains)}}
        if not parts or parts[0] != "domains" or len(parts) < 2 or parts[1] not in self.zones:
            return self._not_found()
        zone = parts[1]
        if len(parts) == 2 and request.method == "GET":
            return 200, {"domain": {"name": zone, "ttl": 1800, "zone_file": ""}}
        if parts[2:] == ["records"] and request.method == "GET":
            found = [self._record_json(r) for r in self.records.values() if r.zone == zone]
            return 200, {"domain_records": found, "links": {}, "meta": {"total": len(found)}}
        if parts[2:] == ["records"] and request.method == "POST":
            return self._create(zone, request.body)
        if len(parts) == 4 and parts[2] == "records" and request.method == "DELETE":
            record = self.records.get(parts[3])
            if record is None or record.zone != zone:
                return self._not_found()
            self.remove_record(record.id)
            return 204, None
        return self._not_found()

    def _create(self, zone: str, body: Any) -> Reply:
        body = body if isinstance(body, dict) else {}
        for field in ("type", "name", "data"):
            if not body.get(field):
                return 422, self.error_body(422, f"{field} is required")
        name = body["name"]
        if name.endswith(".") or name == zone or name.endswith("." + zone):
            # The API takes the name relative to the domain: "www", or "@" for the apex.
            return 422, self.error_body(422, f"Name {name!r} must be relative to {zone}")
        fqdn = zone if name == "@" else f"{name}.{zone}"
        ttl = int(body.get("ttl") or 1800)
        if ttl < 30:
            return 422, self.error_body(422, "TTL must be at least 30 seconds")
        record = self.add_record(zone, body["type"], fqdn, body["data"], ttl)
        return 201, {"domain_record": self._record_json(record)}


class CloudflareDnsFake(FakeDnsProvider):
    """Cloudflare API v4 zones and DNS records; every answer is the
    {"success", "errors", "messages", "result"} envelope."""

    prefix = "/client/v4"

    def error_body(self, status: int, message: str) -> Any:
        code = {400: 1004, 401: 10000, 403: 10000, 404: 7003, 429: 971}.get(status, 10001)
        return {
            "success": False,
            "errors": [{"code": code, "message": message}],
            "messages": [],
            "result": None,
        }

    def unauthorized(self) -> Reply:
        return 401, self.error_body(401, "Authentication error")

    @staticmethod
    def _ok(result: Any, **extra: Any) -> Any:
        return {"success": True, "errors": [], "messages": [], "result": result, **extra}

    def _zone_id(self, zone_id: str) -> str | None:
        return next((name for name, zid in self.zones.items() if zid == zone_id), None)

    def _record_json(self, record: FakeRecord) -> dict[str, Any]:
        return {
            "id": record.id,
            "zone_id": self.zones[record.zone],
            "zone_name": record.zone,
            "name": record.name,
            "type": record.type,
            "content": record.value,
            "proxiable": False,
            "proxied": False,
            "ttl": record.ttl,
        }

    def route(self, request: DnsRequest) -> Reply:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["user", "tokens", "verify"] and request.method == "GET":
            return 200, self._ok({"id": "ed17574386854bf78a67040be0a770b0", "status": "active"})
        if parts == ["zones"] and request.method == "GET":
            wanted = (request.query.get("name") or [None])[0]
            found = [
                {"id": zid, "name": name, "status": "active"}
                for name, zid in sorted(self.zones.items())
                if wanted in (None, name)
            ]
            info = {"page": 1, "per_page": 20, "count": len(found), "total_count": len(found)}
            return 200, self._ok(found, result_info=info)
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
            zone = self._zone_id(parts[1])
            if zone is None:
                return 404, self.error_body(
                    404, "Could not route to /zones/..., perhaps your object identifier is invalid?"
                )
            if len(parts) == 3 and request.method == "POST":
                return self._create(zone, request.body)
            if len(parts) == 3 and request.method == "GET":
                found = [self._record_json(r) for r in self.records.values() if r.zone == zone]
                return 200, self._ok(found)
            if len(parts) == 4 and request.method == "DELETE":
                record = self.records.get(parts[3])
                if record is None or record.zone != zone:
                    return 404, self.error_body(404, "Record not found")
                self.remove_record(record.id)
                return 200, self._ok({"id": record.id})
        return 404, self.error_body(404, "Route not found")

    def _create(self, zone: str, body: Any) -> Reply:
        body = body if isinstance(body, dict) else {}
        for field in ("type", "name", "content"):
            if not body.get(field):
                return 400, self.error_body(400, f"DNS Validation Error: {field} is required")
        name = body["name"].rstrip(".").lower()
        if name != zone and not name.endswith("." + zone):
            return 400, self.error_body(400, f"DNS Validation Error: {name} is not in zone {zone}")
        ttl = int(body.get("ttl") or 1)
        if ttl != 1 and not 60 <= ttl <= 86400:
            return 400, self.error_body(
                400, "DNS Validation Error: TTL must be between 60 and 86400 seconds, or 1 for Automatic"
            )
        record = self.add_record(zone, body["type"], name, body["content"], ttl)
        return 200, self._ok(self._record_json(record))


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _dispatch(self) -> None:
        fake: FakeDnsProvider = self.server.fake  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = DnsRequest(
            method=self.command,
            path=unquote(url.path).removeprefix(fake.prefix),
            query=parse_qs(url.query),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
        )
        try:
            status, payload = fake.handle(request)
        except requests.RequestException as exc:  # challtestsrv did not take the record
            status, payload = 500, fake.error_body(500, f"DNS backend: {exc}")
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the fake records requests itself."""
