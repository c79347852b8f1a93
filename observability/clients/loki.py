"""Loki's HTTP query API (LogQL over a time range). CHOM only reads: Promtail on each VPS pushes."""

import json
from dataclasses import dataclass
from datetime import datetime

import requests
from django.conf import settings

from observability.clients import NotConfigured, ServiceError
from observability.clients.prometheus import Series


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


def _get(path: str, params: dict) -> dict:
    base = settings.LOKI_URL
    if not base:
        raise NotConfigured("LOKI_URL")
    try:
        response = requests.get(
            base.rstrip("/") + path, params=params, timeout=settings.OBSERVABILITY_QUERY_TIMEOUT
        )
    except requests.RequestException as exc:
        raise LokiError(f"Loki is unreachable: {exc.__class__.__name__}") from exc
    if response.status_code != 200:
        raise LokiError(
            f"Loki answered {response.status_code}: {response.text[:300]}",
            permanent=400 <= response.status_code < 500 and response.status_code != 429,
        )
    try:
        body = response.json()
        return body["data"]
    except (ValueError, KeyError) as exc:
        raise LokiError("Loki sent an answer that is not a query result") from exc


def query_logs(
    logql: str, *, start: datetime, end: datetime, limit: int, direction: str = "backward"
) -> list[LogLine]:
    """Log lines, newest first by default."""
    data = _get(
        "/loki/api/v1/query_range",
        {"query": logql, "start": _ns(start), "end": _ns(end), "limit": limit, "direction": direction},
    )
    if data.get("resultType") != "streams":
        raise LokiError(f"expected log streams, got {data.get('resultType')!r}", permanent=True)
    lines = [
        LogLine(int(ts), line, stream["stream"]) for stream in data["result"] for ts, line in stream["values"]
    ]
    lines.sort(key=lambda entry: entry.timestamp_ns, reverse=direction == "backward")
    return lines[:limit]


def query_metric(logql: str, *, start: datetime, end: datetime, step_seconds: int) -> list[Series]:
    """A LogQL metric query (count_over_time, sum_over_time...) as Prometheus-like series."""
    data = _get(
        "/loki/api/v1/query_range",
        {"query": logql, "start": _ns(start), "end": _ns(end), "step": f"{step_seconds}s"},
    )
    if data.get("resultType") != "matrix":
        raise LokiError(f"expected a matrix, got {data.get('resultType')!r}", permanent=True)
    return [
        Series(row.get("metric", {}), [(float(t), float(v)) for t, v in row["values"]])
        for row in data["result"]
    ]
