"""Alertmanager's API v2, silences only: create one, list them, expire one. Alerts themselves reach
CHOM through the webhook (observability/services.py::alertmanager_ingest)."""

import re
from dataclasses import dataclass
from datetime import datetime

import requests
from django.conf import settings
from django.utils.dateparse import parse_datetime

from observability.clients import NotConfigured, ServiceError


class AlertmanagerError(ServiceError):
    service = "alertmanager"


class SilenceNotFound(AlertmanagerError):
    pass


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: dict[str, str]) -> bool:
        """Alertmanager's semantics: a missing label is the empty string; regexes are anchored."""
        value = labels.get(self.name, "")
        hit = re.fullmatch(self.value, value) is not None if self.is_regex else value == self.value
        return hit == self.is_equal

    def __str__(self) -> str:
        """amtool's notation: name="value", name!="value", name=~"regex", name!~"regex"."""
        op = ("=~" if self.is_equal else "!~") if self.is_regex else ("=" if self.is_equal else "!=")
        return f'{self.name}{op}"{self.value}"'


@dataclass(frozen=True)
class Silence:
    id: str
    state: str  # active, pending or expired
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def _request(method: str, path: str, *, body: dict | None = None, params: dict | None = None):
    base = settings.ALERTMANAGER_URL
    if not base:
        raise NotConfigured("ALERTMANAGER_URL")
    try:
        response = requests.request(
            method,
            base.rstrip("/") + "/api/v2" + path,
            json=body,
            params=params,
            headers={"Accept": "application/json"},
            timeout=settings.OBSERVABILITY_QUERY_TIMEOUT,
        )
    except requests.RequestException as exc:
        raise AlertmanagerError(f"Alertmanager is unreachable: {exc.__class__.__name__}") from exc
    if response.status_code < 300:
        return response
    detail = _detail(response)
    # 0.25 answers 500 "silence not found" for an unknown id; newer releases answer 404.
    if response.status_code == 404 or "silence not found" in detail:
        raise SilenceNotFound(f"Alertmanager has no such silence: {detail}", permanent=True, status=404)
    raise AlertmanagerError(
        f"Alertmanager {method} {path} answered {response.status_code}: {detail}",
        permanent=400 <= response.status_code < 500,
        status=response.status_code,
    )


def _detail(response: requests.Response) -> str:
    """Its errors are a JSON string or {"code", "message"}."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("message", body))[:300]
    return str(body)[:300]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def silence_create(
    *, matchers: list[Matcher], starts_at: datetime, ends_at: datetime, created_by: str, comment: str
) -> str:
    """The new silence's id."""
    body = {
        "matchers": [
            {"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal} for m in matchers
        ],
        "startsAt": _iso(starts_at),
        "endsAt": _iso(ends_at),
        "createdBy": created_by,
        "comment": comment,
    }
    return str(_request("POST", "/silences", body=body).json()["silenceID"])


def _silence(raw: dict) -> Silence:
    return Silence(
        id=raw["id"],
        state=raw.get("status", {}).get("state", ""),
        matchers=tuple(
            Matcher(
                name=m["name"],
                value=m["value"],
                is_regex=bool(m.get("isRegex")),
                is_equal=m.get("isEqual", True) is not False,
            )
            for m in raw.get("matchers", [])
        ),
        starts_at=parse_datetime(raw["startsAt"]),
        ends_at=parse_datetime(raw["endsAt"]),
        created_by=raw.get("createdBy", ""),
        comment=raw.get("comment", ""),
    )


def silences(*, states: tuple[str, ...] = ("active", "pending")) -> list[Silence]:
    """Silences in STATES, the ones ending soonest first."""
    found = [_silence(raw) for raw in _request("GET", "/silences").json()]
    return sorted((s for s in found if s.state in states), key=lambda s: (s.ends_at, s.id))


def silence_get(*, silence_id: str) -> Silence:
    return _silence(_request("GET", f"/silence/{silence_id}").json())


def silence_expire(*, silence_id: str) -> None:
    """Ends the silence now. Expiring an expired silence is a no-op; an unknown id is SilenceNotFound."""
    _request("DELETE", f"/silence/{silence_id}")
