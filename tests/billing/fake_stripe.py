"""A small stateful fake of the Stripe API endpoints CHOM calls, on 127.0.0.1:<random port>.

It speaks what the real `stripe` library sends (form-encoded bodies, `Authorization: Bearer`,
`Idempotency-Key`), holds the true subscription state, and can be told to fail. It is as strict as
Stripe where CHOM could get it wrong:
- a repeated Idempotency-Key replays the stored response, but the same key with other parameters
  (or on another endpoint) is refused: 400 `idempotency_error`;
- a meter event timestamped outside Stripe's accepted window (the past 35 days, up to 5 minutes
  ahead: the API reference of `POST /v1/billing/meter_events`) is refused: 400 on `timestamp`;
- an injected 5xx carries `Stripe-Should-Retry: true` (or `false` when told), the header the
  `stripe` library obeys before its own status-code rules.
`sign()` signs webhook payloads the way Stripe does.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

# Meter events: "Must be within the past 35 calendar days or up to 5 minutes in the future."
METER_EVENT_MAX_AGE = 35 * 86400
METER_EVENT_MAX_AHEAD = 5 * 60


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header value for `payload`: t=TS,v1=hex(hmac_sha256(secret, "TS.payload"))."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def _decode_form(body: str) -> dict:
    """`a[b][0][c]=1` → {"a": {"b": [{"c": "1"}]}}, as Stripe reads it."""
    root: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node):
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_listify(node[k]) for k in sorted(node, key=int)]
        return {k: _listify(v) for k, v in node.items()}
    return node


@dataclass
class Request:
    method: str
    path: str
    params: dict
    headers: dict
    status: int = 0
    replayed: bool = False
    response_headers: dict = field(default_factory=dict)


@dataclass
class _Failure:
    method: str
    path: str
    status: int
    remaining: int | None
    should_retry: bool


@dataclass
class _Stored:
    """What Stripe keeps per Idempotency-Key: the request it answered and its answer."""

    method: str
    path: str
    params: dict
    status: int
    payload: dict


@dataclass
class FakeStripe:
    api_key: str = "sk_test_fake"
    requests: list[Request] = field(default_factory=list)
    customers: dict = field(default_factory=dict)
    subscriptions: dict = field(default_factory=dict)
    sessions: dict = field(default_factory=dict)
    invoices: list = field(default_factory=list)
    meter_events: list = field(default_factory=list)
    # Stripe's clock (seconds since the epoch): a test that runs CHOM at another time moves it too.
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._idempotent: dict[str, _Stored] = {}
        self._failures: list[_Failure] = []
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake._handle(self)

            def do_POST(self):
                fake._handle(self)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- test controls -------------------------------------------------------------------------
    def fail(
        self, method: str, path: str, *, status: int = 503, times: int | None = 1, should_retry: bool = True
    ) -> None:
        """Answer `status` to the next `times` matching requests (None: until told otherwise), with
        `Stripe-Should-Retry: true` (Stripe's word that the same request may succeed) or `false`."""
        self._failures.append(_Failure(method, path, status, times, should_retry))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):04d}"

    def subscription_create(
        self, *, customer: str, price: str, status: str = "active", period_end: int | None = None
    ) -> dict:
        sub_id = self.new_id("sub")
        end = period_end or int(time.time()) + 30 * 86400
        self.subscriptions[sub_id] = {
            "id": sub_id,
            "object": "subscription",
            "customer": customer,
            "status": status,
            "cancel_at_period_end": False,
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": self.new_id("si"),
                        "object": "subscription_item",
                        "price": {"id": price, "object": "price"},
                        "current_period_start": end - 30 * 86400,
                        "current_period_end": end,
                    }
                ],
            },
        }
        return self.subscriptions[sub_id]

    def subscription_update(
        self, sub_id: str, *, status: str | None = None, price: str | None = None
    ) -> dict:
        sub = self.subscriptions[sub_id]
        if status:
            sub["status"] = status
        if price:
            sub["items"]["data"][0]["price"] = {"id": price, "object": "price"}
        return json.loads(json.dumps(sub))

    def checkout_complete(self, session_id: str) -> tuple[dict, dict]:
        """The customer paid on the Checkout page: Stripe creates the subscription."""
        session = self.sessions[session_id]
        sub = self.subscription_create(customer=session["customer"], price=session["_price"])
        session.update(status="complete", payment_status="paid", subscription=sub["id"])
        public = {k: v for k, v in session.items() if not k.startswith("_")}
        return public, json.loads(json.dumps(sub))

    def invoice_create(self, *, subscription: str, status: str, amount: int = 2900) -> dict:
        sub = self.subscriptions[subscription]
        invoice = {
            "id": self.new_id("in"),
            "object": "invoice",
            "number": f"CHOM-{next(self._ids):04d}",
            "customer": sub["customer"],
            "status": status,
            "amount_due": amount,
            "amount_paid": amount if status == "paid" else 0,
            "currency": "usd",
            "created": int(time.time()),
            "period_end": int(time.time()),
            "hosted_invoice_url": "https://invoice.stripe.test/i",
            "invoice_pdf": "https://invoice.stripe.test/i.pdf",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription},
            },
        }
        self.invoices.append(invoice)
        return invoice

    def event(self, type_: str, obj: dict) -> dict:
        return {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "type": type_,
            "livemode": False,
            "pending_webhooks": 1,
            "data": {"object": obj},
        }

    # --- assertions ----------------------------------------------------------------------------
    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def assert_called(self, method: str, path: str, *, times: int | None = None, **params) -> list[Request]:
        """The matching requests; AssertionError when none (or not `times`) matched."""
        matching = [
            r for r in self.calls(method, path) if all(r.params.get(k) == v for k, v in params.items())
        ]
        if not matching or (times is not None and len(matching) != times):
            seen = [(r.method, r.path, r.params) for r in self.requests]
            raise AssertionError(
                f"expected {times if times is not None else '≥1'} {method} {path} with {params}, "
                f"got {len(matching)}; requests seen: {seen}"
            )
        return matching

    # --- the HTTP side -------------------------------------------------------------------------
    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        url = urlsplit(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length).decode() if length else ""
        params = _decode_form(body if http.command == "POST" else url.query)
        request = Request(http.command, url.path, params, dict(http.headers.items()))
        with self._lock:
            self.requests.append(request)
            status, payload = self._answer(request)
        request.status = status
        if request.replayed:
            request.response_headers["Idempotent-Replayed"] = "true"
        data = json.dumps(payload).encode()
        http.send_response(status)
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(data)),
            "Request-Id": f"req_{next(self._ids)}",
            **request.response_headers,
        }
        for name, value in headers.items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(data)

    def _answer(self, request: Request) -> tuple[int, dict]:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, _error("invalid_request_error", "Invalid API Key provided")
        for failure in self._failures:
            if failure.method == request.method and request.path.startswith(failure.path):
                if failure.remaining is None or failure.remaining > 0:
                    if failure.remaining is not None:
                        failure.remaining -= 1
                    request.response_headers["Stripe-Should-Retry"] = str(failure.should_retry).lower()
                    return failure.status, _error("api_error", "fake Stripe outage")
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key and key in self._idempotent:
            return self._replay(request, key, self._idempotent[key])
        refusal = self._validate(request)
        if refusal:
            return refusal  # refused before anything ran: Stripe keeps no result for the key
        status, payload = self._route(request)
        if request.method == "POST" and key and status < 500:
            self._idempotent[key] = _Stored(request.method, request.path, request.params, status, payload)
        return status, payload

    def _replay(self, request: Request, key: str, stored: _Stored) -> tuple[int, dict]:
        if (stored.method, stored.path) != (request.method, request.path):
            return 400, _error(
                "idempotency_error",
                "Keys for idempotent requests can only be used for the same endpoint they were first "
                f"used for ('{stored.method} {stored.path}' vs '{request.method} {request.path}'). "
                f"Try using a key other than '{key}' if you meant to execute a different request.",
            )
        if stored.params != request.params:
            return 400, _error(
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first "
                f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
            )
        request.replayed = True
        return stored.status, stored.payload

    def _validate(self, request: Request) -> tuple[int, dict] | None:
        if (request.method, request.path) == ("POST", "/v1/billing/meter_events"):
            raw = request.params.get("timestamp")
            now = int(self.clock())
            if raw is not None and not now - METER_EVENT_MAX_AGE <= int(raw) <= now + METER_EVENT_MAX_AHEAD:
                return 400, _error(
                    "invalid_request_error",
                    f"Timestamp {raw} is not valid: it must be within the past 35 calendar days or up "
                    "to 5 minutes in the future.",
                    param="timestamp",
                )
        return None

    def _route(self, request: Request) -> tuple[int, dict]:
        m, path, p = request.method, request.path, request.params
        if (m, path) == ("POST", "/v1/customers"):
            customer = {
                "id": self.new_id("cus"),
                "object": "customer",
                "email": p.get("email"),
                "name": p.get("name"),
                "metadata": p.get("metadata", {}),
            }
            self.customers[customer["id"]] = customer
            return 200, customer
        if (m, path) == ("POST", "/v1/checkout/sessions"):
            if p.get("customer") not in self.customers:
                return 400, _error("invalid_request_error", f"No such customer: '{p.get('customer')}'")
            session_id = self.new_id("cs")
            self.sessions[session_id] = {
                "id": session_id,
                "object": "checkout.session",
                "mode": p.get("mode"),
                "customer": p["customer"],
                "client_reference_id": p.get("client_reference_id"),
                "metadata": p.get("metadata", {}),
                "status": "open",
                "subscription": None,
                "url": f"https://checkout.stripe.test/c/{session_id}",
                "_price": p["line_items"][0]["price"],
            }
            return 200, {k: v for k, v in self.sessions[session_id].items() if not k.startswith("_")}
        if (m, path) == ("POST", "/v1/billing_portal/sessions"):
            session_id = self.new_id("bps")
            return 200, {
                "id": session_id,
                "object": "billing_portal.session",
                "customer": p.get("customer"),
                "return_url": p.get("return_url"),
                "url": f"https://billing.stripe.test/p/{session_id}",
            }
        if m == "GET" and path.startswith("/v1/subscriptions/"):
            sub = self.subscriptions.get(path.rsplit("/", 1)[1])
            if sub is None:
                return 404, _error(
                    "invalid_request_error",
                    f"No such subscription: '{path.rsplit('/', 1)[1]}'",
                    code="resource_missing",
                )
            return 200, sub
        if (m, path) == ("GET", "/v1/invoices"):
            mine = [i for i in self.invoices if i["customer"] == p.get("customer")]
            limit = int(p.get("limit", 10))
            return 200, {
                "object": "list",
                "url": "/v1/invoices",
                "has_more": len(mine) > limit,
                "data": list(reversed(mine))[:limit],
            }
        if (m, path) == ("POST", "/v1/invoices/create_preview"):
            sub = self.subscriptions.get(p.get("subscription", ""))
            if sub is None:
                return 400, _error("invalid_request_error", "No upcoming invoices for this subscription")
            end = sub["items"]["data"][0]["current_period_end"]
            return 200, {
                "object": "invoice",
                "id": None,
                "customer": sub["customer"],
                "amount_due": 2900,
                "currency": "usd",
                "next_payment_attempt": end,
                "period_end": end,
            }
        if (m, path) == ("POST", "/v1/billing/meter_events"):
            event = {
                "object": "billing.meter_event",
                "event_name": p.get("event_name"),
                "identifier": p.get("identifier"),
                "payload": p.get("payload", {}),
                "timestamp": int(p.get("timestamp") or self.clock()),
                "created": int(self.clock()),
                "livemode": False,
            }
            self.meter_events.append(event)
            return 200, event
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({m}: {path})")


def _error(type_: str, message: str, code: str | None = None, param: str | None = None) -> dict:
    error = {"type": type_, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return {"error": error}
