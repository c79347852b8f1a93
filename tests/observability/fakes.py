"""Small local HTTP servers standing in for Loki, Grafana and a Slack-style webhook, implementing the
documented endpoints CHOM calls and recording every request. Each can be told to fail."""

import gzip
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: object  # the JSON body, or None (no body, or not JSON: see raw)
    raw: bytes = b""


def _json_or_none(raw: bytes) -> object:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


@dataclass
class FakeServer:
    """Subclasses implement handle(request) -> (status, json body)."""

    requests: list[Request] = field(default_factory=list)
    fail_status: int | None = None

    def __post_init__(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=_json_or_none(raw),
                    raw=raw,
                )
                fake.requests.append(request)
                if fake.fail_status:
                    status, body = fake.fail_status, {"message": "fake failure"}
                else:
                    status, body = fake.handle(request)
                data = b"" if status == 204 else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, status: int = 503) -> None:
        self.fail_status = status

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def handle(self, request: Request) -> tuple[int, object]:
        raise NotImplementedError


_LABEL = re.compile(r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*")')
_FILTER = re.compile(r'\|=\s*("(?:[^"\\]|\\.)*")')


@dataclass
class FakeLoki(FakeServer):
    """Loki with `auth_enabled: true`: every request names its tenant in X-Scope-OrgID (401 "no org
    id" without one, as Loki answers) and sees only that tenant's streams. POST /loki/api/v1/push
    stores a JSON push (gzip or not) and accepts Promtail's protobuf, kept as `requests[i].raw`
    (this fake decodes no snappy); GET /loki/api/v1/query_range answers log queries (exact label
    matchers plus `|= "text"`) from the tenant's streams, and metric queries with `matrix`."""

    streams: dict[str, list[dict]] = field(default_factory=dict)  # org id -> streams
    matrix: list[dict] = field(default_factory=list)

    def push(self, labels: dict[str, str], lines: list[tuple[int, str]], *, org_id: str) -> None:
        stream = {"stream": labels, "values": [[str(ts), line] for ts, line in lines]}
        self.streams.setdefault(org_id, []).append(stream)

    def handle(self, request):
        org_id = request.headers.get("x-scope-orgid", "")
        if not org_id:
            return 401, {"message": "no org id"}
        if request.method == "POST" and request.path == "/loki/api/v1/push":
            return self._push(org_id, request)
        if request.method == "GET" and request.path == "/loki/api/v1/query_range":
            return 200, {"status": "success", "data": self._query(org_id, request.query)}
        return 404, {"message": "not found"}

    def _push(self, org_id: str, request) -> tuple[int, object]:
        if request.headers.get("content-type", "").startswith("application/x-protobuf"):
            return 204, {}
        raw = request.raw
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        body = _json_or_none(raw)
        if not isinstance(body, dict) or not isinstance(body.get("streams"), list):
            return 400, {"message": "loghttp push: not a push request"}
        self.streams.setdefault(org_id, []).extend(body["streams"])
        return 204, {}

    def _query(self, org_id: str, params: dict) -> dict:
        logql = params["query"]
        if not logql.startswith("{"):
            return {"resultType": "matrix", "result": self.matrix}
        selector = logql[: logql.index("}") + 1]
        wanted = {name: json.loads(value) for name, value in _LABEL.findall(selector)}
        texts = [json.loads(t) for t in _FILTER.findall(logql[len(selector) :])]
        start, end = int(params["start"]), int(params["end"])
        result = []
        for stream in self.streams.get(org_id, []):
            if any(stream["stream"].get(k) != v for k, v in wanted.items()):
                continue
            values = [
                [ts, line]
                for ts, line in stream["values"]
                if start <= int(ts) <= end and all(t in line for t in texts)
            ]
            if values:
                result.append({"stream": stream["stream"], "values": values})
        return {"resultType": "streams", "result": result}


@dataclass
class FakeGrafana(FakeServer):
    """Folders, dashboards and datasources by uid, as Grafana's HTTP API stores them; checks the
    bearer token. A datasource's secureJsonData is write-only: answers show secureJsonFields."""

    token: str = "grafana-test-token"
    folders: dict[str, str] = field(default_factory=dict)
    dashboards: dict[str, dict] = field(default_factory=dict)
    datasources: dict[str, dict] = field(default_factory=dict)

    def handle(self, request):
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"message": "Unauthorized"}
        path, body = request.path, request.body
        if path == "/api/folders" and request.method == "POST":
            if body["uid"] in self.folders:
                return 409, {"message": "folder exists"}
            self.folders[body["uid"]] = body["title"]
            return 200, {"uid": body["uid"], "title": body["title"]}
        if path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            if uid not in self.folders:
                return 404, {"message": "folder not found"}
            if request.method == "PUT":
                self.folders[uid] = body["title"]
            return 200, {"uid": uid, "title": self.folders[uid]}
        if path == "/api/dashboards/db" and request.method == "POST":
            if body["folderUid"] not in self.folders:
                return 400, {"message": "folder not found"}
            dashboard = body["dashboard"]
            version = self.dashboards.get(dashboard["uid"], {}).get("dashboard", {}).get("version", 0) + 1
            self.dashboards[dashboard["uid"]] = {
                "dashboard": {**dashboard, "id": 7, "version": version},
                "meta": {"folderUid": body["folderUid"]},
            }
            return 200, {"status": "success", "uid": dashboard["uid"], "version": version}
        if path.startswith("/api/dashboards/uid/"):
            stored = self.dashboards.get(path.rsplit("/", 1)[1])
            return (200, stored) if stored else (404, {"message": "Dashboard not found"})
        if path == "/api/datasources" or path.startswith("/api/datasources/uid/"):
            return self._datasource(request)
        return 404, {"message": "not found"}

    def _datasource(self, request) -> tuple[int, object]:
        if request.method == "POST":
            body = request.body
            taken = {d["name"] for d in self.datasources.values()}
            if body["uid"] in self.datasources or body["name"] in taken:
                return 409, {"message": "data source with the same name already exists"}
            self.datasources[body["uid"]] = {**body, "id": len(self.datasources) + 1}
            return 200, {"message": "Datasource added", "datasource": self._shown(body["uid"])}
        uid = request.path.rsplit("/", 1)[1]
        if uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        if request.method == "PUT":
            self.datasources[uid] = {**request.body, "id": self.datasources[uid]["id"]}
        return 200, self._shown(uid)

    def _shown(self, uid: str) -> dict:
        stored = dict(self.datasources[uid])
        secure = stored.pop("secureJsonData", {})
        return {**stored, "orgId": 1, "secureJsonFields": {key: True for key in secure}}

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("POST", "PUT")]


@dataclass
class FakeChatWebhook(FakeServer):
    """A Slack-style incoming webhook: accepts {"text": ...}."""

    def handle(self, request):
        if request.method != "POST" or not isinstance(request.body, dict) or "text" not in request.body:
            return 400, {"message": "invalid_payload"}
        return 200, {"ok": True}
