"""Deploying a site's code: build a release on the VPS, switch `current` to it, verify it serves,
and switch back by itself when it does not; rollback to an earlier release still on the VPS
(the one before, or one the operator chose: `site_rollback_request`)."""

from django.conf import settings

from chom.events import event_emit
from chom.operations import OperationContext, OperationError, register
from fleet.models import Vps
from fleet.remote.agent_client import Agent, AgentError
from fleet.services import vps_ensure_ready
from sites.configs import render_pool, render_vhost
from sites.cron_jobs import cron_apply
from sites.deploy_keys import site_git_host_key_pin
from sites.environment import env_apply, site_variable_values
from sites.git_ssh import git_host_key_changed_error
from sites.models import Release, Site
from sites.runtime import htpasswd_apply
from sites.services import (
    _call,
    _record_failed,
    _record_succeeded,
    _remote,
    _set,
    _site_of,
    site_ensure_payload,
    site_release_switched,
    site_verify,
    vhost_spec,
)
from sites.types import site_type
from sites.uploads import upload_discard, upload_source
from sites.workers import workers_apply


def _deploy_failed(ctx: OperationContext, reason: str) -> None:
    upload_discard(ctx.params)  # failed for good (or cancelled): a retry needs a new upload
    site = Site.objects.filter(pk=int(ctx.operation.target_id)).first()
    if site is None:
        return
    site.releases.filter(name=ctx.params.get("release", ""), status=Release.Status.BUILDING).update(
        status=Release.Status.FAILED, error=f"failed during step '{ctx.operation.step}': {reason}"[:2000]
    )
    # A site that served before keeps serving its previous release (or its suspension page: a
    # deploy queued before a suspension must not mark the site active when it fails).
    status = Site.Status.ACTIVE if site.current_release else Site.Status.FAILED
    if site.current_release and vhost_spec(site).suspended:
        status = Site.Status.SUSPENDED
    _set(site, status=status, status_reason=reason[:2000])
    event_emit(event="deploy.failed", tenant=site.tenant, site=site, message=f"Deploy failed: {reason}")


def _deploy_succeeded(ctx: OperationContext) -> None:
    upload_discard(ctx.params)
    _record_succeeded(ctx)


@register(
    "site.deploy",
    queue="remote",
    soft_time_limit=1200,
    time_limit=1260,
    on_failure=_deploy_failed,
    on_success=_deploy_succeeded,
)
def site_deploy_run(ctx: OperationContext) -> dict:
    site = _site_of(ctx)
    kind = site_type(site.type)
    release = ctx.params["release"]
    first_deploy = not site.current_release
    if site.vps.status != Vps.Status.ACTIVE and site.vps.tenant_id == site.tenant_id:
        # The tenant's dedicated server, reserved with the site: built now, or waited for.
        ctx.step(f"dedicated server {site.vps.name}", progress=5)
        vps_ensure_ready(ctx=ctx, vps=site.vps)
        site.refresh_from_db()
    _set(site, status=Site.Status.DEPLOYING)
    Release.objects.get_or_create(site=site, name=release)

    def work(agent: Agent) -> dict:
        ctx.step("site user and directories", progress=10)
        _call(ctx, agent, "site-ensure", site_ensure_payload(site))
        if kind.uses_database:
            ctx.step("database", progress=20)
            _call(
                ctx,
                agent,
                "db-ensure",
                {"name": site.db_name, "user": site.db_user, "password": site.db_password},
            )
        if kind.uses_php:
            ctx.step(f"php-fpm pool (PHP {site.php_version})", progress=30)
            pool = render_pool(
                name=site.unix_user, php_version=site.php_version, php_settings=site.php_settings
            )
            _call(
                ctx,
                agent,
                "pool-apply",
                {"name": site.unix_user, "php_version": site.php_version, "content": pool},
            )
        htpasswd_apply(ctx, agent, site, prune=False)  # before any vhost names the files
        ctx.step(f"release {release}", progress=45)
        if ctx.params.get("upload"):  # a release from an archive the tenant uploaded
            source = upload_source(agent=agent, upload=ctx.params["upload"], release=release, log=ctx.log)
        else:
            source = kind.source(site)
        # git, upload, copy (of the current release), placeholder, archive, distro-package
        site.releases.filter(name=release, source="").update(source=source["type"])
        payload = {"name": site.unix_user, "release": release, "source": source}
        if kind.build_steps:
            payload["build"] = list(kind.build_steps)
        if kind.shared_paths:
            payload["shared"] = list(kind.shared_paths)
        env = kind.env_file(site)
        if env:
            payload["env"] = env
        site_env = kind.site_env(site, site_variable_values(site=site))
        if site_env is not None:
            payload["site_env"] = site_env  # shared/.env, the site's: see sites/environment.py
        if site.build_command:
            payload["build_hook"] = list(site.build_command)
        try:
            built = _call(ctx, agent, "release-create", payload)
        except AgentError as exc:
            raise git_host_key_changed_error(site, exc) or exc
        vhost = {"name": site.unix_user, "content": render_vhost(vhost_spec(site))}
        if not first_deploy:
            ctx.step("nginx vhost", progress=75)
            _call(ctx, agent, "vhost-apply", vhost)
        ctx.step("switch current release", progress=85)
        activated = _call(
            ctx,
            agent,
            "release-activate",
            {"name": site.unix_user, "release": release, "keep": settings.SITE_RELEASES_KEPT},
        )
        for subcommand, extra in kind.post_activate(site, first_deploy=first_deploy):
            ctx.step(subcommand, progress=90)
            _call(ctx, agent, subcommand, extra)
        workers_apply(ctx, agent, site, restart=not first_deploy)
        cron_apply(ctx, agent, site)
        hook_failure = _release_hook(ctx, agent, site, release)
        if hook_failure:
            return {"hook_failure": hook_failure}
        if first_deploy:
            # Only now does nginx serve the site's domains: until the installer ran (WordPress's
            # wp-install), the first visitor could otherwise claim /wp-admin/install.php.
            ctx.step("nginx vhost", progress=92)
            _call(ctx, agent, "vhost-apply", vhost)
        return {
            "commit": built.data.get("commit", ""),
            "pruned": activated.data.get("pruned", []),
            "git_host_keys": built.data.get("git_host_keys", []),
        }

    result = _remote(ctx, site, work)
    if "hook_failure" in result:
        _switch_back(ctx, site, release, reason=result["hook_failure"], what="its release hook failed")
        raise OperationError(result["hook_failure"])  # the first release: nothing to switch back to
    changes = ctx.changes
    ctx.log(f"{changes} change(s) on {site.vps.name}" if changes else f"no changes on {site.vps.name}")
    ctx.step("verify the site answers", progress=95)
    try:
        site_verify(site=site, log=ctx.log)
    except OperationError as exc:
        _switch_back(ctx, site, release, reason=str(exc))
        raise
    site_release_switched(
        site=site, release=release, commit=result["commit"], pruned=result["pruned"], deployed=True
    )
    if site_git_host_key_pin(site=site, lines=result["git_host_keys"]):
        ctx.log(f"git host key pinned: {site.git_host_key_fingerprint}")
    event_emit(event="deploy.succeeded", tenant=site.tenant, site=site, message=f"Release {release} is live.")
    return {"release": release, "commit": result["commit"], "changes": changes}


def _release_hook(ctx: OperationContext, agent: Agent, site: Site, release: str) -> str:
    """Run the site's release hook in the new current release; its failure, or ""."""
    if not site.release_command:
        return ""
    ctx.step("release hook", progress=91)
    payload = {"name": site.unix_user, "release": release, "argv": list(site.release_command)}
    try:
        _call(ctx, agent, "hook-run", payload)
    except AgentError as exc:
        if exc.code != "command_failed":
            raise  # SSH or the agent itself: the deploy's ordinary failure handling
        return str(exc)
    return ""


def _switch_back(
    ctx: OperationContext, site: Site, failed_release: str, *, reason: str, what: str = "does not answer"
) -> None:
    """The new release went live but does not answer (or its release hook failed): put the
    previous one back at once."""
    previous = site.current_release
    if not previous or previous == failed_release:
        return
    ctx.log(f"release {failed_release} {what} ({reason}); switching back to {previous}", level="warning")

    def switch(agent: Agent) -> None:
        _call(
            ctx,
            agent,
            "release-activate",
            {"name": site.unix_user, "release": previous, "keep": settings.SITE_RELEASES_KEPT},
        )
        _follow_switch(ctx, agent, site)

    _remote(ctx, site, switch)
    site.releases.filter(name=failed_release).update(status=Release.Status.FAILED)
    raise OperationError(f"{reason}; switched back to release {previous}, which is serving again")


def _follow_switch(ctx: OperationContext, agent: Agent, site: Site) -> None:
    """After switching back to an older release, what runs beside the web server follows it: a
    worker keeps the code it started with until it is restarted."""
    for subcommand, extra in site_type(site.type).post_activate(site, first_deploy=False):
        ctx.step(subcommand, progress=80)
        _call(ctx, agent, subcommand, extra)
    workers_apply(ctx, agent, site, restart=True)


@register(
    "site.rollback",
    queue="remote",
    soft_time_limit=300,
    time_limit=360,
    on_failure=_record_failed,
    on_success=_record_succeeded,
)
def site_rollback_run(ctx: OperationContext) -> dict:
    site = _site_of(ctx)
    release = ctx.params["release"]

    def work(agent: Agent):
        ctx.step(f"switch current release back to {release}", progress=50)
        _call(
            ctx,
            agent,
            "release-activate",
            {"name": site.unix_user, "release": release, "keep": settings.SITE_RELEASES_KEPT},
        )
        # The variables are the site's: the older release gets the current ones (and for
        # Laravel a config cache rebuilt from them, its own being stale).
        ctx.step("environment", progress=70)
        env_apply(ctx, agent, site)
        _follow_switch(ctx, agent, site)

    _remote(ctx, site, work)
    site_verify(site=site, log=ctx.log)
    site_release_switched(site=site, release=release)
    return {"release": release}
