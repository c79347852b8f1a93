"""Suspending a site (billing dunning, staff) and lifting the suspension, on the VPS. While a site
is suspended visitors get the suspension page and none of the tenant's code runs on the shared
VPS: its cron timers are stopped and disabled (a run in progress too) and its workers stopped and
disabled. Their rows stay as they are, so lifting the suspension starts exactly what the tenant
had. Whatever applies timers or workers meanwhile (a deploy queued before the suspension, a change
to a job or a worker, a restore) reads the suspension from the site (`Site.is_suspended`) and
keeps them stopped: the agent's cron-apply and workers-apply take a `suspended` flag."""

from chom.events import event_emit
from chom.operations import OperationContext, register
from fleet.remote.agent_client import Agent, AgentError
from sites.configs import render_vhost
from sites.cron_jobs import cron_apply
from sites.models import Site
from sites.services import (
    _call,
    _record_failed,
    _record_succeeded,
    _remote,
    _set,
    _site_of,
    site_verify,
    vhost_spec,
)
from sites.workers import workers_apply


def _apply_vhost(ctx: OperationContext, agent: Agent, site: Site, *, suspended: bool) -> None:
    ctx.step("nginx vhost (suspended page)" if suspended else "nginx vhost", progress=50)
    content = render_vhost(vhost_spec(site, suspended=suspended))
    _call(ctx, agent, "vhost-apply", {"name": site.unix_user, "content": content})


def _apply_runtime(ctx: OperationContext, agent: Agent, site: Site) -> None:
    """The site's workers and cron timers as its rows say, stopped while it is suspended."""
    workers_apply(ctx, agent, site)
    cron_apply(ctx, agent, site)


# Stopping a worker waits for it (its TimeoutStopSec is 60 s: a queue worker finishes its job).
@register(
    "site.suspend",
    queue="remote",
    soft_time_limit=300,
    time_limit=360,
    on_failure=_record_failed,
    on_success=_record_succeeded,
)
def site_suspend_run(ctx: OperationContext) -> dict:
    site = _site_of(ctx)
    was_suspended = site.status == Site.Status.SUSPENDED

    def work(agent: Agent) -> None:
        _apply_vhost(ctx, agent, site, suspended=True)
        # The VPS serves the suspension page from here on (vhost-apply waits for nginx to serve it).
        _set(site, status=Site.Status.SUSPENDED)
        try:
            _apply_runtime(ctx, agent, site)
        except AgentError as exc:
            if exc.code != "not_found":
                raise
            ctx.log("the site has no files on the server yet: none of its code runs there")

    _remote(ctx, site, work)
    site_verify(site=site, log=ctx.log)
    if not was_suspended:
        why = f" ({site.suspended_reason})" if site.suspended_reason else ""
        message = f"{site.domain} is suspended{why}: visitors see the suspension page."
        event_emit(event="site.suspended", tenant=site.tenant, site=site, message=message)
    return {}


@register(
    "site.unsuspend",
    queue="remote",
    soft_time_limit=300,
    time_limit=360,
    on_failure=_record_failed,
    on_success=_record_succeeded,
)
def site_unsuspend_run(ctx: OperationContext) -> dict:
    site = _site_of(ctx)
    if site.suspended_reason:
        ctx.log(f"still suspended ({site.suspended_reason}): nothing to do")
        return {}

    def work(agent: Agent) -> None:
        _apply_vhost(ctx, agent, site, suspended=False)
        _set(site, status=Site.Status.ACTIVE if site.current_release else Site.Status.FAILED)
        if site.current_release:
            _apply_runtime(ctx, agent, site)
        else:
            ctx.log("the site has no release yet: its first deploy starts its workers and cron jobs")

    _remote(ctx, site, work)
    site_verify(site=site, log=ctx.log, accept=lambda code: code < 500 and code != 503)
    return {}
