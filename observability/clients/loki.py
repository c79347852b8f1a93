"""Loki's HTTP API with multi-tenancy (`auth_enabled: true`): every call names its tenant in
`X-Scope-OrgID`. CHOM reads (LogQL over a time range) and forwards the pushes of Promtail on each
VPS, which reaches Loki only through CHOM (observability/log_shipping.py)."""

import json
from dataclasses import dataclass
from datetime import datetime

import requests
from django.conf import settings

from observability.clients import NotConfigured, ServiceError


class LokiError(ServiceError):
    service = "loki"


@dataclass(frozen=True)
class LogLine:
    timestamp_ns: int
    line: str
    labels: dict[str, str]


def label_value(value: str) -> str:
    """A LogQL string literal (Go syntax): quotes, backslashes and control characters escaped."""
    return json.dumps(value, ensure_ascii=False)


def selector(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{name}={label_value(value)}" for name, value in sorted(labels.items())) + "}"


def _ns(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1_000_000_000))


def vps_org_id(vps_id: int) -> str:
    """CHOM's Loki tenancy: each VPS writes into its own tenant and its sites are read from it, so
    a VPS can never write lines that show up as another VPS's sites."""
    return f"vps-{vps_id}"


def _request(
    method: str,
    path: str,
    *,
    org_id: str,
    timeout: float,
    params: dict | None = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    base = settings.LOKI_URL
    if not base:
        raise NotConfigured("LOKI_URL")
    try:
        response = requests.request(
            method,
            base.rstrip("/") + path,
            params=params,
            data=data,
            headers={**(headers or {}), "X-Scope-OrgID": org_id},
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise LokiError(f"Loki is unreachable: {exc.__class__.__name__}") from exc
    if not 200 <= response.status_code < 300:
        raise LokiError(
            f"Loki answered {response.status_code}: {response.text[:300]}",
            permanent=400 <= response.status_code < 500 and response.status_code != 429,
            status=response.status_code,
        )
    return response


def _get(path: str, params: dict, org_id: str) -> dict:
    response = _request(
        "GET", path, org_id=org_id, timeout=settings.OBSERVABILITY_QUERY_TIMEOUT, params=params
    )
    try:
        return response.json()["data"]
    except (ValueError, KeyError) as exc:
        raise LokiError("Loki sent an answer that is not a query result") from exc


def push(body: bytes, *, org_id: str, content_type: str, content_encoding: str = "") -> None:
    """Store one push request in tenant ORG_ID, its body passed on byte for byte (Promtail sends
    snappy-compressed protobuf; JSON, possibly gzipped, works too)."""
    headers = {"Content-Type": content_type}
    if content_encoding:
        headers["Content-Encoding"] = content_encoding
    _request(
        "POST",
        "/loki/api/v1/push",
        org_id=org_id,
        timeout=settings.LOKI_PUSH_TIMEOUT,
        data=body,
        headers=headers,
    )


def query_logs(
    logql: str, *, org_id: str, start: datetime, end: datetime, limit: int, direction: str = "backward"
) -> list[LogLine]:
    """Log lines of tenant ORG_ID, newest first by default."""
    data = _get(
        "/loki/api/v1/query_range",
        {"query": logql, "start": _ns(start), "end": _ns(end), "limit": limit, "direction": direction},
        org_id,
    )
    if data.get("resultType") != "streams":
        raise LokiError(f"expected log streams, got {data.get('resultType')!r}", permanent=True)
    lines = [
        LogLine(int(ts), line, stream["stream"]) for stream in data["result"] for ts, line in stream["values"]
    ]
    lines.sort(key=lambda entry: entry.timestamp_ns, reverse=direction == "backward")
    return lines[:limit]
