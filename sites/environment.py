"""A site's environment variables: the site's, not a release's.

Stored encrypted (SiteVariable), listed without values, revealed only by the audited reveal. A
change is an Operation (`site.environment`) that applies it on the VPS without building a release:
the agent's env-apply rewrites /var/www/NAME/shared/.env (every release links `.env` there), and
for Laravel rebuilds the cached config before PHP-FPM and the queue worker reload. A deploy and a
rollback apply the same file, so a rollback keeps the current variables.

The file = the type's own values (DB_*, APP_KEY...; SiteType.managed_env) then the site's, each
quoted by the agent so that no value can inject another line.
"""

import re

from django.db import transaction
from django.utils import timezone

from chom.errors import ApplicationError
from chom.models import Operation
from chom.operations import OperationContext, register
from chom.services import audit_record
from fleet.remote.agent_client import Agent
from sites.models import Site, SiteVariable
from sites.services import (
    _call,
    _queue,
    _record_failed,
    _record_succeeded,
    _remote,
    _site_of,
    site_require_live,
)
from sites.types import site_type

NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
MAX_VALUE_BYTES = 8 * 1024
MAX_VARIABLES = 200


# --- reads ---------------------------------------------------------------------------------------


def site_variables(*, site: Site) -> list[SiteVariable]:
    return list(site.variables.order_by("name"))


def site_variable_values(*, site: Site) -> dict[str, str]:
    return {v.name: v.value for v in site.variables.order_by("name")}


# --- checks --------------------------------------------------------------------------------------


def environment_supported(*, site: Site) -> None:
    refusal = site_type(site.type).environment_refusal
    if refusal:
        raise ApplicationError(400, "environment_unsupported", refusal, {"variables": [refusal]})


def variables_check(*, site: Site, variables: dict[str, str | None]) -> None:
    """Field errors by variable name: the name's shape, the value's size and content, and the
    names CHOM manages for this type (unless the type lets the site override them)."""
    managed = site_type(site.type).managed_env_names()
    problems: dict[str, list[str]] = {}
    for name, value in variables.items():
        if not NAME_RE.fullmatch(name):
            problems[name] = ["Names are upper-case letters, digits and _, not starting with a digit, ≤ 64."]
        elif name in managed:
            problems[name] = [f"{name} is managed by CHOM for {site.type} sites and cannot be set."]
        elif value is not None and _value_problem(value):
            problems[name] = [_value_problem(value)]
    if problems:
        raise ApplicationError(400, "invalid_input", "Some variables are invalid.", {"variables": problems})


def _value_problem(value: str) -> str:
    if "\x00" in value:
        return "Values may not contain NUL characters."
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "Values must be valid Unicode text."
    return f"Values are at most {MAX_VALUE_BYTES} bytes." if size > MAX_VALUE_BYTES else ""


# --- writes --------------------------------------------------------------------------------------


def site_environment_set(
    *,
    site: Site,
    variables: dict[str, str | None],
    replace: bool,
    actor=None,
    source_ip=None,
    requested_by_tenant: bool = False,
) -> Operation:
    """REPLACE: VARIABLES become the whole set; else they are merged in (None deletes a name).
    Saved, then an operation applies them on the VPS."""
    site_require_live(site=site, allow_suspended=True)
    environment_supported(site=site)
    if replace and any(v is None for v in variables.values()):
        nulls = {
            n: ["null deletes a variable in a PATCH; leave it out of a PUT."]
            for n, v in variables.items()
            if v is None
        }
        raise ApplicationError(400, "invalid_input", "A PUT sets values only.", {"variables": nulls})
    variables_check(site=site, variables=variables)
    with transaction.atomic():
        Site.objects.select_for_update().filter(pk=site.pk).first()  # one change of a site at a time
        current = site_variable_values(site=site)
        wanted = {} if replace else dict(current)
        wanted.update(variables)
        wanted = {k: v for k, v in wanted.items() if v is not None}
        if len(wanted) > MAX_VARIABLES:
            message = f"A site has at most {MAX_VARIABLES} variables ({len(wanted)} asked)."
            raise ApplicationError(400, "invalid_input", message, {"variables": [message]})
        changed = _store(site, current, wanted)
        audit_record(
            action="site.environment_changed",
            actor=actor,
            tenant=site.tenant,
            target=f"site:{site.domain}",
            source_ip=source_ip,
            data={"replace": replace, **changed},  # names only, never values
        )
        return _queue(site, "site.environment", actor=actor, requested_by_tenant=requested_by_tenant)


def _store(site: Site, current: dict[str, str], wanted: dict[str, str]) -> dict[str, list[str]]:
    now = timezone.now()
    removed = sorted(set(current) - set(wanted))
    site.variables.filter(name__in=removed).delete()
    updated = sorted(n for n in wanted if n in current and current[n] != wanted[n])
    for name in updated:
        site.variables.filter(name=name).update(value=wanted[name], updated_at=now)
    added = sorted(set(wanted) - set(current))
    SiteVariable.objects.bulk_create(
        [SiteVariable(site=site, name=n, value=wanted[n], updated_at=now) for n in added]
    )
    return {"added": added, "updated": updated, "removed": removed}


def site_environment_reveal(*, site: Site, actor=None, source_ip=None) -> dict[str, str]:
    values = site_variable_values(site=site)
    audit_record(
        action="site.environment_revealed",
        actor=actor,
        tenant=site.tenant,
        target=f"site:{site.domain}",
        source_ip=source_ip,
        data={"names": sorted(values)},
    )
    return values


# --- on the VPS ----------------------------------------------------------------------------------


def env_apply_payload(site: Site) -> dict | None:
    """The agent's env-apply input for SITE, or None when its type has no environment."""
    kind = site_type(site.type)
    site_env = kind.site_env(site, site_variable_values(site=site))
    if site_env is None:
        return None
    payload = {"name": site.unix_user, "site_env": site_env, "config_cache": kind.caches_config}
    if kind.uses_php and site.php_version:
        payload["php_version"] = site.php_version
    return payload


def env_apply(ctx: OperationContext, agent: Agent, site: Site) -> None:
    payload = env_apply_payload(site)
    if payload is not None:
        _call(ctx, agent, "env-apply", payload)


@register(
    "site.environment",
    queue="remote",
    soft_time_limit=600,
    time_limit=660,
    on_failure=_record_failed,
    on_success=_record_succeeded,
)
def site_environment_run(ctx: OperationContext) -> dict:
    """Reads the variables when it runs (never from its params: no secret in an operation row),
    so a retry or a later change applies the newest set; env-apply changes only what differs."""
    site = _site_of(ctx)
    if not site.current_release:
        ctx.log("the site has no release yet: its first deploy writes the environment")
        return {"applied": False}
    ctx.step("environment", progress=50)
    _remote(ctx, site, lambda agent: env_apply(ctx, agent, site))
    ctx.log(
        f"{ctx.changes} change(s) on {site.vps.name}" if ctx.changes else f"no changes on {site.vps.name}"
    )
    return {"applied": True, "changes": ctx.changes}
