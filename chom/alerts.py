"""Raising and resolving CHOM's own alerts from any layer.

Fleet, sites and backups notice problems (a VPS unreachable, a certificate that could not be
issued, a failed restore drill) but sit below observability, which owns the Alert rows and their
notifications. They call these two functions; observability registers the implementation in its
`AppConfig.ready()` (`register_alerts`). Without it (observability not installed) an alert is only
logged, never lost silently.
"""

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_raise: Callable[..., Any] | None = None
_resolve: Callable[..., bool] | None = None


def register_alerts(*, raise_: Callable[..., Any], resolve: Callable[..., bool]) -> None:
    global _raise, _resolve
    _raise, _resolve = raise_, resolve


def alert_raise(
    *, name: str, key: str, summary: str, severity: str = "warning", labels: dict | None = None, tenant=None
):
    """Fire (or refresh) the alert NAME for KEY; repeated calls update one firing alert."""
    if _raise is None:
        logger.error("alert %s:%s (%s) not recorded, no alert backend: %s", name, key, severity, summary)
        return None
    return _raise(name=name, key=key, summary=summary, severity=severity, labels=labels, tenant=tenant)


def alert_resolve(*, name: str, key: str) -> bool:
    """Resolve the firing alert NAME for KEY; False when none was firing."""
    if _resolve is None:
        return False
    return _resolve(name=name, key=key)
