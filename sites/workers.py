"""A site's workers: long-running argv commands (queue workers, node processes) supervised by
systemd on the VPS, one template unit per worker and one instance per process, in the site's
slice (its tier's limits), as the site user.

A change (create, update, delete) is saved, then an Operation (`site.workers`) makes the VPS's
units match the site's whole set (the agent's workers-apply verifies new units with
`systemd-analyze verify` before any goes live; a refused set leaves the previous units running).
A deploy, a rollback and an environment change restart the running workers: a worker keeps the
code and variables it started with. Their state (running, restarts, last exit) is read back from
the VPS when a reader asks and the last reading is stale (`workers_status_refresh`).
"""

import re
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from chom.errors import ApplicationError
from chom.models import Operation
from chom.operations import OperationContext, register
from chom.services import audit_record
from fleet.models import Vps
from fleet.remote.agent_client import Agent, AgentError
from fleet.remote.transport import TransportError
from fleet.services import FleetError, transport_for
from sites.models import Site, Worker
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

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,39}")
MAX_ARGS = 50
MAX_ARG_CHARS = 1000
# A reading of the workers' state older than this is refreshed from the VPS when asked for; a
# failed reading is not retried sooner either (a VPS that is down costs one attempt per period).
# (settings.WORKER_STATUS_MAX_AGE seconds, 15 by default).
STATUS_CONNECT_TIMEOUT = 3.0
STATUS_COMMAND_TIMEOUT = 10.0
FIELDS = ("name", "command", "processes", "restart", "enabled")


# --- reads ---------------------------------------------------------------------------------------


def site_workers(*, site: Site):
    return site.workers.order_by("name")


def worker_of_site(*, site: Site, worker_id: int) -> Worker:
    worker = site.workers.filter(pk=worker_id).first()
    if worker is None:
        raise ApplicationError(404, "not_found", "Not found.")
    return worker


# --- checks --------------------------------------------------------------------------------------


def command_problem(command) -> str:
    """Why COMMAND is not an argv CHOM runs, or ""."""
    if not isinstance(command, list) or not 1 <= len(command) <= MAX_ARGS:
        return f"The command is a list of 1 to {MAX_ARGS} arguments."
    for arg in command:
        if not isinstance(arg, str) or len(arg) > MAX_ARG_CHARS:
            return f"Each argument is text of at most {MAX_ARG_CHARS} characters."
        if any(char in arg for char in "\x00\n\r"):
            return "Arguments may not contain NUL characters or line breaks."
    if not command[0].strip():
        return "The command (first argument) is empty."
    return ""


def _check(fields: dict) -> None:
    problems = {}
    if "name" in fields and not NAME_RE.fullmatch(fields["name"] or ""):
        problems["name"] = ["Lower-case letters, digits and -, starting with a letter, at most 40."]
    if "command" in fields and command_problem(fields["command"]):
        problems["command"] = [command_problem(fields["command"])]
    if "restart" in fields and fields["restart"] not in Worker.Restart.values:
        problems["restart"] = [f"One of {', '.join(Worker.Restart.values)}."]
    processes = fields.get("processes", 1)
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        problems["processes"] = ["At least 1."]
    if problems:
        raise ApplicationError(400, "invalid_input", "Some fields are invalid.", problems)


def _check_processes(site: Site, *, processes: int, exclude: Worker | None = None) -> None:
    """All of a site's workers together run at most the tier's worker_processes_max processes."""
    limit = site.tenant.limits.worker_processes_max
    others = site.workers.exclude(pk=exclude.pk if exclude else None).aggregate(n=Sum("processes"))["n"] or 0
    if others + processes > limit:
        message = (
            f"The {site.tenant.tier} tier allows {limit} worker process(es) per site; this site's "
            f"other workers run {others}."
        )
        raise ApplicationError(403, "tier_limit_reached", message, {"processes": [message]})


# --- writes --------------------------------------------------------------------------------------


def worker_create(
    *,
    site: Site,
    name: str,
    command: list[str],
    processes: int = 1,
    restart: str = Worker.Restart.ALWAYS,
    enabled: bool = True,
    actor=None,
    source_ip=None,
    requested_by_tenant: bool = False,
) -> tuple[Worker, Operation]:
    site_require_live(site=site, allow_suspended=True)
    fields = {"name": name, "command": command, "processes": processes, "restart": restart}
    _check(fields)
    try:
        with transaction.atomic():
            Site.objects.select_for_update().filter(pk=site.pk).first()  # one change of a site at a time
            _check_processes(site, processes=processes)
            worker = Worker.objects.create(site=site, enabled=enabled, **fields)
            _audit("site.worker_created", worker, actor, source_ip, fields | {"enabled": enabled})
            return worker, _apply_request(site, actor, requested_by_tenant)
    except IntegrityError:
        message = f"This site already has a worker called {name}."
        raise ApplicationError(409, "worker_exists", message, {"name": [message]})


def worker_update(
    *, worker: Worker, actor=None, source_ip=None, requested_by_tenant: bool = False, **changes
) -> Operation:
    """CHANGES (any of name, command, processes, restart, enabled) saved, then applied."""
    site = worker.site
    site_require_live(site=site, allow_suspended=True)
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ApplicationError(400, "invalid_input", f"Unknown fields: {', '.join(sorted(unknown))}.")
    _check(changes)
    try:
        with transaction.atomic():
            Site.objects.select_for_update().filter(pk=site.pk).first()
            if "processes" in changes:
                _check_processes(site, processes=changes["processes"], exclude=worker)
            for field, value in changes.items():
                setattr(worker, field, value)
            worker.updated_at = timezone.now()
            worker.save(update_fields=[*changes, "updated_at"])
            _audit("site.worker_updated", worker, actor, source_ip, changes)
            return _apply_request(site, actor, requested_by_tenant)
    except IntegrityError:
        message = f"This site already has a worker called {changes.get('name')}."
        raise ApplicationError(409, "worker_exists", message, {"name": [message]})


def worker_delete(
    *, worker: Worker, actor=None, source_ip=None, requested_by_tenant: bool = False
) -> Operation:
    site = worker.site
    site_require_live(site=site, allow_suspended=True)
    with transaction.atomic():
        Site.objects.select_for_update().filter(pk=site.pk).first()
        _audit("site.worker_deleted", worker, actor, source_ip, {})
        worker.delete()
        return _apply_request(site, actor, requested_by_tenant)


def _audit(action: str, worker: Worker, actor, source_ip, data: dict) -> None:
    audit_record(
        action=action,
        actor=actor,
        tenant=worker.site.tenant,
        target=f"site:{worker.site.domain}",
        source_ip=source_ip,
        data={"worker": worker.name, **data},
    )


def _apply_request(site: Site, actor, requested_by_tenant: bool) -> Operation:
    return _queue(site, "site.workers", actor=actor, requested_by_tenant=requested_by_tenant)


# --- on the VPS ----------------------------------------------------------------------------------


def workers_payload(site: Site, *, restart: bool = False) -> dict:
    """The agent's workers-apply input: the site's whole set (the units then match it exactly)."""
    return {
        "name": site.unix_user,
        "workers": [
            {
                "name": w.name,
                "argv": list(w.command),
                "processes": w.processes,
                "restart": w.restart,
                "enabled": w.enabled,
            }
            for w in site_workers(site=site)
        ],
        # A type without an environment (static, WordPress) has no shared/.env to load.
        "env": not site_type(site.type).environment_refusal,
        "restart": restart,
        # A suspended site's workers stay stopped (and are not started at boot): sites/suspension.py.
        "suspended": site.is_suspended,
    }


def workers_apply(ctx: OperationContext, agent: Agent, site: Site, *, restart: bool = False) -> None:
    """Units = the site's workers; RESTART also restarts the running ones (after a release switch:
    a worker keeps the code it started with)."""
    ctx.step("workers", progress=88)
    workers_sync(lambda subcommand, payload: _call(ctx, agent, subcommand, payload), site, restart=restart)


def workers_sync(call, site: Site, *, restart: bool = False) -> None:
    """workers-apply through CALL(subcommand, payload) (an agent's call, or an operation's). On a
    site of an older CHOM the agent removes the supervisor program that ran the type's default
    worker (which the site could not delete then): it becomes that worker, under systemd."""
    result = call("workers-apply", workers_payload(site, restart=restart))
    if result.data.get("supervisor_removed") and _adopt_default_workers(site):
        call("workers-apply", workers_payload(site, restart=restart))
    Worker.objects.filter(site=site).update(status_checked_at=None)  # read them again when asked


def _adopt_default_workers(site: Site) -> bool:
    have = set(site.workers.values_list("name", flat=True))
    rows = [Worker(site=site, **w) for w in site_type(site.type).default_workers() if w["name"] not in have]
    Worker.objects.bulk_create(rows, ignore_conflicts=True)
    return bool(rows)


@register(
    "site.workers",
    queue="remote",
    soft_time_limit=300,
    time_limit=360,
    on_failure=_record_failed,
    on_success=_record_succeeded,
)
def site_workers_run(ctx: OperationContext) -> dict:
    """Reads the workers when it runs, so a retry or a later change applies the newest set."""
    site = _site_of(ctx)
    if not site.current_release:
        ctx.log("the site has no release yet: its first deploy starts the workers")
        return {"applied": False}
    _remote(ctx, site, lambda agent: workers_apply(ctx, agent, site))
    ctx.log(
        f"{ctx.changes} change(s) on {site.vps.name}" if ctx.changes else f"no changes on {site.vps.name}"
    )
    return {"applied": True, "changes": ctx.changes}


# --- state, read back from the VPS ---------------------------------------------------------------


def workers_status_refresh(*, site: Site, force: bool = False) -> None:
    """When the last reading of SITE's workers is stale, read them from the VPS (one agent call,
    short timeouts, no transaction open meanwhile) and save it; a failure is saved as the
    reading's error, the last known values kept. Concurrent readers do not pile up: one reads."""
    workers = list(site.workers.all())
    now = timezone.now()
    if not workers or not site.current_release or site.vps.status != Vps.Status.ACTIVE:
        return
    max_age = timedelta(seconds=getattr(settings, "WORKER_STATUS_MAX_AGE", 15))
    fresh = all(w.status_checked_at and now - w.status_checked_at < max_age for w in workers)
    if (fresh and not force) or not cache.add(f"chom:workers-status:{site.pk}", 1, timeout=30):
        return
    try:
        data, error = _read_status(site), ""
    except (TransportError, AgentError, FleetError) as exc:
        data, error = {}, str(exc)[:500]
    finally:
        cache.delete(f"chom:workers-status:{site.pk}")
    now = timezone.now()
    for worker in workers:
        if error:
            status = dict(worker.status) | {"error": error}
        else:
            status = _summary(worker, data.get(worker.name))
        Worker.objects.filter(pk=worker.pk).update(status=status, status_checked_at=now)


def _read_status(site: Site) -> dict:
    with transport_for(site.vps, connect_timeout=STATUS_CONNECT_TIMEOUT) as transport:
        result = Agent(transport).call(
            "workers-status", {"name": site.unix_user}, timeout=STATUS_COMMAND_TIMEOUT
        )
    return result.data.get("workers", {})


def _summary(worker: Worker, reading: dict | None) -> dict:
    reading = reading or {}
    instances = [i for i in reading.get("instances", []) if str(i.get("instance", "")).isdigit()]
    return {
        "running": int(reading.get("running", 0)),
        "pids": int(reading.get("pids", 0)),
        "restarts": int(reading.get("restarts", 0)),
        "last_exit": reading.get("last_exit"),
        "instances": sorted(
            (
                {
                    "process": int(i["instance"]),
                    "state": str(i.get("active_state", "")),
                    "sub_state": str(i.get("sub_state", "")),
                    "pid": int(i.get("pid") or 0),
                    "restarts": int(i.get("restarts") or 0),
                    "last_exit": i.get("last_exit"),
                }
                for i in instances
            ),
            key=lambda i: i["process"],
        ),
        "error": "",
    }


def worker_state(worker: Worker) -> str:
    """One word for the API and the dashboard, from the last reading."""
    if worker.status_checked_at is None:
        return "unknown"
    running = (worker.status or {}).get("running", 0)
    if worker.enabled and worker.site.is_suspended:  # kept stopped until the suspension is lifted
        return "stopping" if running else "suspended"
    if not worker.enabled:
        return "stopping" if running else "stopped"
    if running >= worker.processes:
        return "running"
    return "degraded" if running else "down"
