"""A site's cron jobs: argv commands on a cron schedule, run as systemd timers on the VPS (in the
site's slice, so its tier's limits apply; as the site user, in current/, with the site's .env).

A change (create, update, delete) is saved, then an Operation (`site.cron`) makes the VPS's units
match the site's whole set: the agent's cron-apply checks every schedule with
`systemd-analyze calendar` and the units with `systemd-analyze verify` before any goes live, so
a refused set leaves the previous one running. A deploy applies the set too (that is how a new
site's jobs, Laravel's `schedule:run` among them, first arrive). The last run (time, exit code,
output tail) is read back from the VPS when a reader asks and the last reading is stale
(`cron_status_refresh`).
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chom.errors import ApplicationError
from chom.models import Operation
from chom.operations import OperationContext, register
from chom.services import audit_record
from chom.tiers import may_add
from fleet.models import Vps
from fleet.remote.agent_client import Agent, AgentError
from fleet.remote.transport import TransportError
from fleet.services import FleetError, transport_for
from sites import cron
from sites.models import CronJob, Site
from sites.services import (
    _call,
    _queue,
    _record_failed,
    _record_succeeded,
    _remote,
    _site_of,
    site_require_live,
)

MAX_ARGS = 50
MAX_ARG_CHARS = 1000
# A run that takes longer is stopped (systemd's TimeoutStartSec of the oneshot service).
TIMEOUT_SECONDS = 3600
# A reading of the last runs older than this is refreshed from the VPS when a job is read; a
# failed reading is not retried sooner either (a VPS that is down costs one attempt per period).
STATUS_MAX_AGE = timedelta(seconds=getattr(settings, "CRON_STATUS_MAX_AGE", 15))
STATUS_CONNECT_TIMEOUT = 3.0
# A server that did not answer is not asked again for this long, whichever of its sites is read.
STATUS_UNREACHABLE_FOR = 60
STATUS_COMMAND_TIMEOUT = 15.0
FIELDS = ("schedule", "command", "enabled")


# --- reads ---------------------------------------------------------------------------------------


def site_cron_jobs(*, site: Site):
    return site.cron_jobs.order_by("id")


def cron_job_of_site(*, site: Site, job_id: int) -> CronJob:
    job = site.cron_jobs.filter(pk=job_id).first()
    if job is None:
        raise ApplicationError(404, "not_found", "Not found.")
    return job


def on_calendar(job: CronJob) -> list[str]:
    return cron.on_calendar(job.schedule)


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


def _check(fields: dict) -> dict:
    """FIELDS checked; the schedule comes back trimmed."""
    problems = {}
    if "schedule" in fields:
        try:
            cron.parse(fields["schedule"])
            fields = fields | {"schedule": " ".join(fields["schedule"].split())}
        except cron.ScheduleError as exc:
            problems["schedule"] = [str(exc)]
    if "command" in fields and command_problem(fields["command"]):
        problems["command"] = [command_problem(fields["command"])]
    if "enabled" in fields and not isinstance(fields["enabled"], bool):
        problems["enabled"] = ["true or false."]
    if problems:
        raise ApplicationError(400, "invalid_input", "Some fields are invalid.", problems)
    return fields


def _check_count(site: Site) -> None:
    limit = site.tenant.limits.cron_jobs_max
    count = site.cron_jobs.count()
    if not may_add(count=count, limit=limit):
        message = f"The {site.tenant.tier} tier allows {limit} cron jobs per site and this site has {count}."
        raise ApplicationError(400, "tier_limit_reached", message)


# --- writes --------------------------------------------------------------------------------------


def cron_job_create(
    *,
    site: Site,
    schedule: str,
    command: list[str],
    enabled: bool = True,
    actor=None,
    source_ip=None,
    requested_by_tenant: bool = False,
) -> tuple[CronJob, Operation]:
    site_require_live(site=site, allow_suspended=True)
    fields = _check({"schedule": schedule, "command": command, "enabled": enabled})
    with transaction.atomic():
        Site.objects.select_for_update().filter(pk=site.pk).first()  # one change of a site at a time
        _check_count(site)
        job = CronJob.objects.create(site=site, **fields)
        _audit("site.cron_job_created", job, actor, source_ip, fields)
        return job, _apply_request(site, actor, requested_by_tenant)


def cron_job_update(
    *, job: CronJob, actor=None, source_ip=None, requested_by_tenant: bool = False, **changes
) -> Operation:
    """CHANGES (any of schedule, command, enabled) saved, then applied."""
    site = job.site
    site_require_live(site=site, allow_suspended=True)
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ApplicationError(400, "invalid_input", f"Unknown fields: {', '.join(sorted(unknown))}.")
    changes = _check(changes)
    with transaction.atomic():
        Site.objects.select_for_update().filter(pk=site.pk).first()
        for field, value in changes.items():
            setattr(job, field, value)
        job.updated_at = timezone.now()
        job.save(update_fields=[*changes, "updated_at"])
        _audit("site.cron_job_updated", job, actor, source_ip, changes)
        return _apply_request(site, actor, requested_by_tenant)


def cron_job_delete(
    *, job: CronJob, actor=None, source_ip=None, requested_by_tenant: bool = False
) -> Operation:
    site = job.site
    site_require_live(site=site, allow_suspended=True)
    with transaction.atomic():
        Site.objects.select_for_update().filter(pk=site.pk).first()
        _audit("site.cron_job_deleted", job, actor, source_ip, {})
        job.delete()
        return _apply_request(site, actor, requested_by_tenant)


def _audit(action: str, job: CronJob, actor, source_ip, data: dict) -> None:
    audit_record(
        action=action,
        actor=actor,
        tenant=job.site.tenant,
        target=f"site:{job.site.domain}",
        source_ip=source_ip,
        data={"cron_job": job.pk, **data},
    )


def _apply_request(site: Site, actor, requested_by_tenant: bool) -> Operation:
    return _queue(site, "site.cron", actor=actor, requested_by_tenant=requested_by_tenant)


# --- on the VPS ----------------------------------------------------------------------------------


def cron_payload(site: Site) -> dict:
    """The agent's cron-apply input: the site's whole set (the timers then match it exactly)."""
    return {
        "name": site.unix_user,
        "jobs": [
            {
                "id": job.pk,
                "on_calendar": on_calendar(job),
                "command": list(job.command),
                "enabled": job.enabled,
                "timeout_seconds": TIMEOUT_SECONDS,
            }
            for job in site_cron_jobs(site=site)
        ],
        # A suspended site's timers stay stopped and disabled: sites/suspension.py.
        "suspended": site.is_suspended,
    }


def cron_apply(ctx: OperationContext, agent: Agent, site: Site) -> None:
    """Timers = the site's cron jobs; also removes an older CHOM's /etc/cron.d/chom-NAME. A site
    with no jobs on a server without systemd is no error (there is nothing to run)."""
    ctx.step("cron jobs", progress=89)
    _call(ctx, agent, "cron-apply", cron_payload(site))
    cache.delete(_checked_key(site))  # read the runs again when asked


@register(
    "site.cron",
    queue="remote",
    soft_time_limit=300,
    time_limit=360,
    on_failure=_record_failed,
    on_success=_record_succeeded,
)
def site_cron_run(ctx: OperationContext) -> dict:
    """Reads the jobs when it runs, so a retry or a later change applies the newest set."""
    site = _site_of(ctx)
    if not site.current_release:
        ctx.log("the site has no release yet: its first deploy installs the cron jobs")
        return {"applied": False}
    _remote(ctx, site, lambda agent: cron_apply(ctx, agent, site))
    ctx.log(
        f"{ctx.changes} change(s) on {site.vps.name}" if ctx.changes else f"no changes on {site.vps.name}"
    )
    return {"applied": True, "changes": ctx.changes}


# --- last runs, read back from the VPS -----------------------------------------------------------


def _checked_key(site: Site) -> str:
    return f"chom:cron-status-checked:{site.pk}"


def cron_status_refresh(*, site: Site, force: bool = False) -> None:
    """When the last reading of SITE's job runs is stale, read them from the VPS (one agent call,
    short timeouts, no transaction open meanwhile) and save them; a failure keeps the last known
    values. Concurrent readers do not pile up: one reads, the others use what is saved."""
    jobs = list(site.cron_jobs.all())
    if not jobs or not site.current_release or site.vps.status != Vps.Status.ACTIVE:
        return
    unreachable = f"chom:cron-status-unreachable:{site.vps.ip_address}"
    if (cache.get(_checked_key(site)) or cache.get(unreachable)) and not force:
        return
    if not cache.add(f"chom:cron-status:{site.pk}", 1, timeout=30):
        return
    try:
        readings = _read_status(site, [job.pk for job in jobs])
    except (TransportError, FleetError):
        readings = {}
        cache.set(unreachable, 1, timeout=STATUS_UNREACHABLE_FOR)
    except AgentError:
        readings = {}
    finally:
        cache.set(_checked_key(site), 1, timeout=STATUS_MAX_AGE.total_seconds())
        cache.delete(f"chom:cron-status:{site.pk}")
    for job in jobs:
        reading = readings.get(job.pk)
        if reading and reading.get("last_run_at"):
            CronJob.objects.filter(pk=job.pk).update(**_last_run(reading))


def _read_status(site: Site, ids: list[int]) -> dict[int, dict]:
    with transport_for(site.vps, connect_timeout=STATUS_CONNECT_TIMEOUT) as transport:
        result = Agent(transport).call(
            "cron-status", {"name": site.unix_user, "ids": ids}, timeout=STATUS_COMMAND_TIMEOUT
        )
    return {int(j["id"]): j for j in result.data.get("jobs", []) if str(j.get("id", "")).isdigit()}


def _last_run(reading: dict) -> dict:
    exit_code = reading.get("exit_code")
    return {
        "last_run_at": _when(reading.get("last_run_at")),
        "last_exit_code": exit_code if isinstance(exit_code, int) and not reading.get("running") else None,
        "last_output": str(reading.get("output") or "")[-4000:],
    }


def _when(value) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None
