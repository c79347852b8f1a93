"""Prometheus through prometheus-api-client: instant and range queries, nothing else."""

from dataclasses import dataclass
from datetime import datetime

import requests
from django.conf import settings
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from observability.clients import NotConfigured, ServiceError


class PrometheusError(ServiceError):
    service = "prometheus"


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    values: list[tuple[float, float]]  # (unix seconds, value)


def _connect(url: str | None) -> PrometheusConnect:
    url = url or settings.PROMETHEUS_URL
    if not url:
        raise NotConfigured("PROMETHEUS_URL")
    # No retries: a user waits on this answer, and the caller decides about retrying.
    return PrometheusConnect(url=url, disable_ssl=True, retry=Retry(total=0, raise_on_status=False))


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, timeout=settings.OBSERVABILITY_QUERY_TIMEOUT, **kwargs)
    except PrometheusApiClientException as exc:
        permanent = "Status Code 4" in str(exc)  # 400/422: the query itself is wrong
        raise PrometheusError(f"Prometheus refused the query: {exc}", permanent=permanent) from exc
    except requests.RequestException as exc:
        raise PrometheusError(f"Prometheus is unreachable: {exc.__class__.__name__}") from exc


def _number(raw: str) -> float:
    return float(raw)  # Prometheus sends "NaN", "+Inf" as strings; float() understands both


def query(promql: str, *, url: str | None = None) -> list[Series]:
    """Instant query: one (timestamp, value) per series."""
    result = _call(_connect(url).custom_query, promql)
    return [Series(r["metric"], [(float(r["value"][0]), _number(r["value"][1]))]) for r in result]


def query_range(
    promql: str, *, start: datetime, end: datetime, step_seconds: int, url: str | None = None
) -> list[Series]:
    result = _call(
        _connect(url).custom_query_range, promql, start_time=start, end_time=end, step=str(step_seconds)
    )
    return [Series(r["metric"], [(float(t), _number(v)) for t, v in r["values"]]) for r in result]
