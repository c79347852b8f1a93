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


@dataclass(frozen=True)
class PlainText:
    """A `text/plain` answer body (handle() returns JSON-able bodies otherwise)."""

    text: str


@dataclass
class FakeServer:
    """Subclasses implement handle(request) -> (status, json body or PlainText)."""

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
                if isinstance(body, PlainText):  # as Go's http.Error / Loki's WriteError send it
                    data, content_type = body.text.encode(), "text/plain; charset=utf-8"
                else:
                    data, content_type = (
                        b"" if status == 204 else json.dumps(body).encode(),
                        "application/json",
                    )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if isinstance(body, PlainText):
                    self.send_header("X-Content-Type-Options", "nosniff")
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


# --- LogQL, as strictly as CHOM writes it ----------------------------------------------------------

# The stream labels CHOM's selectors name (observability/queries.py site_selector), sorted as
# observability.clients.loki.selector writes them; job, site and vps are always there.
CHOM_LABELS = ("job", "log", "site", "vps")
REQUIRED_LABELS = {"job", "site", "vps"}
# Loki's lexer token names (pkg/logql/syntax/lex.go), which its parser names in "unexpected X".
_TOKENS = {
    "|=": "PIPE_EXACT", "|~": "PIPE_MATCH", "|>": "PIPE_PATTERN", "!=": "NEQ", "!~": "NRE",
    "=~": "RE", "==": "CMP_EQ", ">=": "GTE", "<=": "LTE", "!>": "NPA",
    "|": "PIPE", "{": "OPEN_BRACE", "}": "CLOSE_BRACE", "(": "OPEN_PARENTHESIS",
    ")": "CLOSE_PARENTHESIS", "[": "RANGE", "]": "CLOSE_BRACKET", ",": "COMMA", "=": "EQ",
    ">": "GT", "<": "LT", "+": "ADD", "-": "SUB", "*": "MUL", "/": "DIV", "%": "MOD", "^": "POW",
    ".": "DOT",
}  # fmt: skip
_KEYWORDS = set(
    "by without bool unwrap offset on ignoring json logfmt regexp unpack pattern label_format line_format"
    " ip decolorize drop keep or and unless group_left group_right variants of".split()
)
# Functions: a token of their own when a "(" follows, else an IDENTIFIER.
_FUNCTIONS = set(
    "rate rate_counter count_over_time bytes_rate bytes_over_time avg_over_time sum_over_time"
    " min_over_time max_over_time stdvar_over_time stddev_over_time quantile_over_time first_over_time"
    " last_over_time absent_over_time vector sum avg max min count stddev stdvar bottomk topk sort"
    " sort_desc label_replace approx_topk bytes duration duration_seconds".split()
)
_RENAMED = {"label_format": "LABEL_FMT", "line_format": "LINE_FMT", "bytes": "BYTES_CONV",
            "duration": "DURATION_CONV", "duration_seconds": "DURATION_SECONDS_CONV"}  # fmt: skip
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9][0-9.]*[A-Za-z]*")
_GO_ESCAPE = re.compile(r'\\(?:[abfnrtv\\"]|[0-7]{3}|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})')


class LogQLRefused(Exception):
    """What Loki answers a query it cannot parse: `parse error at line L, col C: MESSAGE`."""

    def __init__(self, query: str, pos: int, message: str = ""):
        while not message and pos < len(query) and query[pos].isspace():
            pos += 1  # the parser meets the next token, not the blanks before it
        line = query.count("\n", 0, pos) + 1
        col = pos - (query.rfind("\n", 0, pos) + 1) + 1
        super().__init__(f"parse error at line {line}, col {col}: {message or _unexpected(query, pos)}")


def _unexpected(query: str, pos: int) -> str:
    """goyacc's message for the token starting at POS, named as Loki's lexer names it."""
    while pos < len(query) and query[pos].isspace():
        pos += 1
    rest = query[pos:]
    if not rest:
        token = "$end"
    elif rest[0] in '"`':
        token = "STRING"
    elif _NUMBER.match(rest):
        token = "NUMBER"
    elif word := _WORD.match(rest):
        name = word.group().lower()
        calls = rest[word.end() :].lstrip().startswith("(")
        named = (name in _FUNCTIONS and calls) or name in _KEYWORDS
        token = _RENAMED.get(name, name.upper()) if named else "IDENTIFIER"
    else:
        token = _TOKENS.get(rest[:2]) or _TOKENS.get(rest[0], "IDENTIFIER")
    return f"syntax error: unexpected {token}"


class _Cursor:
    """Reads QUERY left to right, accepting only what CHOM writes; anything else → LogQLRefused."""

    def __init__(self, query: str):
        self.query, self.pos = query, 0

    def literal(self, text: str) -> None:
        if not self.query.startswith(text, self.pos):
            # Point at the first character that differs, as the parser meets it.
            same = 0
            while same < len(text) and self.query[self.pos + same : self.pos + same + 1] == text[same]:
                same += 1
            raise LogQLRefused(self.query, self.pos + same)
        self.pos += len(text)

    def takes(self, text: str) -> bool:
        if self.query.startswith(text, self.pos):
            self.pos += len(text)
            return True
        return False

    def string(self) -> str:
        """A double-quoted string with Go's escapes, as Loki's lexer unquotes it (strconv)."""
        start = self.pos
        if not self.query.startswith('"', start):
            raise LogQLRefused(self.query, start)
        pos, out = start + 1, []
        while True:
            if pos >= len(self.query) or self.query[pos] == "\n":
                raise LogQLRefused(self.query, start, "literal not terminated")
            char = self.query[pos]
            if char == '"':
                break
            if char != "\\":
                out.append(char)
                pos += 1
                continue
            escape = _GO_ESCAPE.match(self.query, pos)
            if escape is None:
                raise LogQLRefused(self.query, start, "invalid char escape")
            value = _go_unescape(escape.group())
            if value is None:
                raise LogQLRefused(self.query, start, "invalid syntax")
            out.append(value)
            pos = escape.end()
        self.pos = pos + 1
        return "".join(out)

    def name(self) -> tuple[int, str]:
        word = _WORD.match(self.query, self.pos)
        if word is None:
            raise LogQLRefused(self.query, self.pos)
        self.pos = word.end()
        return word.start(), word.group()

    def digits(self) -> str:
        start = self.pos
        while self.pos < len(self.query) and self.query[self.pos].isdigit():
            self.pos += 1
        if start == self.pos:
            raise LogQLRefused(self.query, start)
        return self.query[start : self.pos]

    def end(self) -> None:
        if self.pos != len(self.query):
            raise LogQLRefused(self.query, self.pos)

    def selector(self) -> dict[str, str]:
        """`{name="value", ...}`: CHOM's label names only, each once, sorted, exact matchers."""
        self.literal("{")
        labels: dict[str, str] = {}
        while True:
            at, name = self.name()
            if name not in CHOM_LABELS or any(name <= seen for seen in labels):
                raise LogQLRefused(self.query, at)
            if self.query[self.pos : self.pos + 2] in ("=~", "!=", "!~"):
                raise LogQLRefused(self.query, self.pos)  # CHOM matches exactly
            self.literal("=")
            labels[name] = self.string()
            if not self.takes(", "):
                break
        self.literal("}")
        if not REQUIRED_LABELS <= labels.keys():
            raise LogQLRefused(self.query, self.pos - 1)
        return labels


def _go_unescape(escape: str) -> str | None:
    """One Go escape sequence's character; None when Go refuses it (not a valid code point)."""
    simple = {
        "a": "\a",
        "b": "\b",
        "f": "\f",
        "n": "\n",
        "r": "\r",
        "t": "\t",
        "v": "\v",
        "\\": "\\",
        '"': '"',
    }
    kind = escape[1]
    if kind in simple:
        return simple[kind]
    value = int(escape[1:], 8) if kind.isdigit() else int(escape[2:], 16)
    if kind.isdigit() and value > 255:
        return None
    if kind in "uU" and (0xD800 <= value <= 0xDFFF or value > 0x10FFFF):
        return None
    return chr(value) if kind in "uU" else bytes([value]).decode("latin-1")


def logql_log_query(query: str) -> tuple[dict[str, str], list[str]]:
    """(selector labels, line filters) of `{...}` followed by any ` |= "text"`, exactly as
    observability/queries.py site_logs_logql writes it."""
    cursor = _Cursor(query)
    labels = cursor.selector()
    texts = []
    while cursor.takes(" |= "):
        texts.append(cursor.string())
    cursor.end()
    return labels, texts


@dataclass
class FakeLoki(FakeServer):
    """Loki with `auth_enabled: true`: every request names its tenant in X-Scope-OrgID (401 "no org
    id" without one, as Loki answers) and sees only that tenant's streams. POST /loki/api/v1/push
    stores a JSON push (gzip or not) and accepts Promtail's protobuf, kept as `requests[i].raw`
    (this fake decodes no snappy).

    GET /loki/api/v1/query_range answers only the LogQL CHOM writes (`logql_log_query`): a stream
    selector of CHOM's labels (job, log, site, vps: sorted, `=` only, `, ` between them) and any
    number of ` |= "text"` line filters, strings double-quoted with Go's escapes; the streams of the
    tenant that match. Anything else (a regexp matcher, another label, a parser stage, any metric
    query: CHOM reads site metrics from Prometheus, observability/queries.py) is refused the way
    Loki refuses a query it cannot parse: HTTP 400, `Content-Type: text/plain; charset=utf-8`,
    `X-Content-Type-Options: nosniff`, and the bare error as the body (no JSON, no newline), e.g.

        parse error at line 1, col 1: syntax error: unexpected SUM

    Loki's shape, from grafana/loki: pkg/util/server/error.go `WriteError` (text/plain, status
    from `ClientHTTPStatusAndError`: 400 for parse errors), pkg/logql/syntax/errors.go
    `ParseError.Error()` ("parse error at line %d, col %d: %s"; "parse error : %s" without a
    position), goyacc's "syntax error: unexpected TOKEN" with the token names of
    pkg/logql/syntax/lex.go (Loki's own test: `unk({ foo = "bar" }[5m])` → line 1, col 1,
    "syntax error: unexpected IDENTIFIER"); its docs list the message and the 400
    (https://grafana.com/docs/loki/latest/query/troubleshoot-query/, "LogQL parse errors"). The
    fake names the first token outside CHOM's forms; it leaves out goyacc's ", expecting …" and is
    stricter than Loki (which runs valid metric queries): a refusal means CHOM sent a query it is
    not meant to send."""

    streams: dict[str, list[dict]] = field(default_factory=dict)  # org id -> streams

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
            try:
                data = self._query(org_id, request.query)
            except LogQLRefused as exc:
                return 400, PlainText(str(exc))
            return 200, {"status": "success", "data": data}
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
        wanted, texts = logql_log_query(params.get("query", ""))
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
