"""What apps above the core do when staff suspend or unsuspend a whole tenant.

The sites and their suspension belong to `sites` (`tenant_sites_suspend/unsuspend`), which sits
above the core; it registers both here in its `AppConfig.ready()`. Without it (no sites app) a
suspension changes only the tenant's status, which already refuses new sites.
"""

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_suspend: Callable[..., list] | None = None
_unsuspend: Callable[..., list] | None = None


def register_tenant_sites(*, suspend: Callable[..., list], unsuspend: Callable[..., list]) -> None:
    """SUSPEND/UNSUSPEND(tenant=, reason=, actor=) return the operations they queued."""
    global _suspend, _unsuspend
    _suspend, _unsuspend = suspend, unsuspend


def tenant_sites_hold(*, tenant, reason: str, actor=None) -> list[Any]:
    if _suspend is None:
        logger.warning("tenant %s suspended, but no app suspends its sites", tenant)
        return []
    return _suspend(tenant=tenant, reason=reason, actor=actor)


def tenant_sites_release(*, tenant, reason: str, actor=None) -> list[Any]:
    """Only the sites held for REASON come back (a site suspended for another reason stays)."""
    if _unsuspend is None:
        return []
    return _unsuspend(tenant=tenant, reason=reason, actor=actor)
