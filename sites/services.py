"""Writes of sites: requests (create, update, deploy, rollback, SSL, suspend, delete), the shared
remote plumbing and the suspend/delete runs. Deploy and rollback runs: sites/deploy.py; TLS: sites/tls.py."""

import json
import logging
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chom.alerts import alert_raise, alert_resolve
from chom.errors import ApplicationError
from chom.models import Operation, Tenant
from chom.operations import OperationContext, OperationError, operation_create, register
from chom.selectors import register_usage
from chom.services import audit_record
from fleet import selectors as fleet_selectors
from fleet import services as fleet_services
from fleet.models import Vps
from fleet.remote.agent_client import Agent, AgentError
from fleet.remote.transport import HostKeyMismatch, TransportError
from fleet.services import transport_for
from sites import probe, selectors
from sites.configs import SERVED_BY_HEADER, VhostSpec
from sites.dns_accounts import site_dns_account_check, site_names_check
from sites.domains import probe_host
from sites.git_ssh import git_host_key_reset_fields
from sites.hooks import site_before_delete
from sites.models import CronJob, Release, Site, SiteHostname, SiteWebhook, WebhookDelivery, Worker
from sites.runtime_configs import spec_fields as runtime_spec_fields
from sites.types import generated_secrets, site_type

logger = logging.getLogger(__name__)


@register_usage("sites")
def _usage_sites(tenant) -> int:
    return selectors.tenant_site_count(tenant)


def new_release_name() -> str:
    return f"{timezone.now():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


# --- requests ------------------------------------------------------------------------------------


def _check_tenant_may_add(*, tenant: Tenant, type_name: str) -> None:
    if tenant.status == Tenant.Status.SUSPENDED:
        raise ApplicationError(
            403, "tenant_suspended", "This account is suspended; settle billing to add sites."
        )
    limits = tenant.limits
    if type_name not in limits.site_types:
        raise ApplicationError(
            403, "tier_limit_reached", f"The {tenant.tier} tier does not include {type_name} sites."
        )
    over = selectors.tenant_over_limits(tenant)
    if over:
        raise ApplicationError(
            403, "tier_limit_reached", "Over your plan's limits, so no new sites: " + "; ".join(over) + "."
        )
    if not selectors.tenant_may_add_site(tenant):
        count = selectors.tenant_site_count(tenant)
        raise ApplicationError(
            403,
            "tier_limit_reached",
            f"The {tenant.tier} tier allows {limits.max_sites} sites and you have {count}.",
        )


def _check_domains_free(domains: list[str], *, field: str, exclude: Site | None = None) -> None:
    """A taken domain is named in the message, under FIELD (domain / aliases)."""
    for domain in domains:
        taken = selectors.domain_taken(domain)
        if taken and not (exclude and domain in exclude.all_domains):
            message = f"{domain} is already hosted here."
            raise ApplicationError(409, "domain_taken", message, {field: [message]})


def _allocate(tenant: Tenant, *, actor=None) -> Vps:
    vps = None
    if tenant.limits.dedicated_vps:
        # Dedicated servers on demand (a default cloud account builds them); else as before.
        vps = fleet_services.vps_dedicated_allocate(tenant=tenant, actor=actor)
    vps = vps or fleet_selectors.vps_allocate(tenant=tenant)
    if vps is None:
        alert_raise(
            name="fleet_no_capacity",
            key="shared",
            summary=f"a site for tenant {tenant.slug} could not be placed: no VPS has free capacity",
            severity="critical",
        )
        raise ApplicationError(
            503, "no_capacity", "No server has room for a new site right now; try again later."
        )
    return vps


def site_create(
    *,
    tenant: Tenant,
    domain: str,
    type: str,
    php_version: str = "",
    repository: dict | None = None,
    aliases: list[str] | tuple[str, ...] = (),
    tls: str = Site.TlsMode.AUTO,
    dns_account: int | None = None,
    actor=None,
    source_ip=None,
    requested_by_tenant: bool = False,
) -> tuple[Site, Operation, dict]:
    """Validate against the tier, the fleet and other tenants, then queue the first deploy.
    Returns (site, operation, credentials shown once). REQUESTED_BY_TENANT (here and in every
    request below): the tenant asked, so the operation counts against its cap of pending ones."""
    kind = site_type(type)
    _check_tenant_may_add(tenant=tenant, type_name=type)
    _check_domains_free([domain], field="domain")
    _check_domains_free(aliases, field="aliases")
    account = site_dns_account_check(
        tenant=tenant, domain=domain, aliases=aliases, type=type, dns_account=dns_account
    )
    vps = _allocate(tenant, actor=actor)
    if kind.uses_php and vps.status != Vps.Status.ACTIVE and not vps.php_versions:
        # A dedicated server still to be built: its distribution's PHP (Debian 12: 8.2).
        php_version = php_version or "8.2"
    elif kind.uses_php:
        php_version = php_version or (vps.php_versions[-1] if vps.php_versions else "")
        if php_version not in vps.php_versions:
            raise ApplicationError(
                400,
                "invalid_input",
                f"PHP {php_version} is not installed on the server "
                f"(available: {', '.join(vps.php_versions)}).",
                {"php_version": [f"choose one of {vps.php_versions}"]},
            )
    try:
        with transaction.atomic():
            site = Site.objects.create(
                tenant=tenant,
                vps=vps,
                domain=domain,
                aliases=list(aliases),
                type=type,
                tls_mode=tls,
                dns_account=account,
                php_version=php_version if kind.uses_php else "",
                repository_url=(repository or {}).get("url", ""),
                repository_branch=(repository or {}).get("branch", "") or ("main" if repository else ""),
                app_key=generated_secrets(type),
            )
            name = f"site{site.pk}"
            site.unix_user = name
            if kind.uses_database:
                site.db_name = site.db_user = name.replace("-", "_")
                site.db_password = secrets.token_urlsafe(24)
            site.save()
            SiteHostname.objects.bulk_create(
                [SiteHostname(site=site, hostname=name) for name in site.all_domains]
            )
            Worker.objects.bulk_create([Worker(site=site, **w) for w in kind.default_workers()])
            CronJob.objects.bulk_create([CronJob(site=site, **job) for job in kind.default_cron_jobs()])
            op = operation_create(
                kind="site.deploy",
                tenant=tenant,
                target=site,
                actor=actor,
                params={"release": new_release_name()},
                requested_by_tenant=requested_by_tenant,
            )
            audit_record(
                action="site.created",
                actor=actor,
                tenant=tenant,
                target=f"site:{domain}",
                source_ip=source_ip,
                data={"type": type, "vps": vps.name},
            )
    except IntegrityError:  # a concurrent create took one of the names first
        taken = [name for name in [domain, *aliases] if selectors.domain_taken(name)] or [domain]
        message = f"{taken[0]} is already hosted here."
        raise ApplicationError(
            409, "domain_taken", message, {"domain" if taken[0] == domain else "aliases": [message]}
        )
    credentials = {}
    if type == "wordpress":
        credentials = {"admin_user": "admin", "admin_password": json.loads(site.app_key)["admin_password"]}
    return site, op, credentials


def _queue(site: Site, kind: str, *, actor=None, params=None, requested_by_tenant: bool = False) -> Operation:
    with transaction.atomic():
        return operation_create(
            kind=kind,
            tenant=site.tenant,
            target=site,
            actor=actor,
            params=params or {},
            requested_by_tenant=requested_by_tenant,
        )


# Saved for the next deploy, which they change; on their own they need no redeploy.
NEXT_DEPLOY_FIELDS = frozenset({"build_command", "release_command"})


def site_update(*, site: Site, actor=None, requested_by_tenant: bool = False, **changes) -> Operation | None:
    """PHP version, aliases or branch: saved, then a redeploy brings the server in line (a refused
    redeploy saves nothing). Deploy hooks alone are only saved."""
    if "aliases" in changes:
        _check_domains_free(changes["aliases"], field="aliases", exclude=site)
        site_names_check(tenant=site.tenant, names=changes["aliases"], field="aliases")
    new_names = set(changes.get("aliases", site.aliases)) - set(site.aliases)
    if "php_version" in changes and changes["php_version"] not in site.vps.php_versions:
        raise ApplicationError(
            400,
            "invalid_input",
            "That PHP version is not installed on the server.",
            {"php_version": ["unavailable"]},
        )
    if "repository_url" in changes:
        changes |= git_host_key_reset_fields(site, changes["repository_url"])
    for field, value in changes.items():
        setattr(site, field, value)
    with transaction.atomic():
        try:
            with transaction.atomic():
                site.save(update_fields=list(changes))
                if "aliases" in changes:
                    site_hostnames_sync(site=site)
                if new_names and site.tls_mode == Site.TlsMode.AUTO and site.tls_state:
                    site_tls_wait(site=site)  # the certificate must cover the new names too
        except IntegrityError:  # a concurrent create or update took one of the aliases first
            message = "One of these aliases was just taken by another site."
            raise ApplicationError(409, "domain_taken", message, {"aliases": [message]})
        audit_record(
            action="site.updated", actor=actor, tenant=site.tenant, target=f"site:{site.domain}", data=changes
        )
        if not set(changes) - NEXT_DEPLOY_FIELDS:
            return None
        return site_deploy_request(site=site, actor=actor, requested_by_tenant=requested_by_tenant)


def site_hostnames_sync(*, site: Site) -> None:
    """SITE's rows in the hostname table = its domain and aliases while live, none once deleted."""
    wanted = set() if site.status == Site.Status.DELETED else set(site.all_domains)
    site.hostnames.exclude(hostname__in=wanted).delete()
    have = set(site.hostnames.values_list("hostname", flat=True))
    SiteHostname.objects.bulk_create([SiteHostname(site=site, hostname=n) for n in sorted(wanted - have)])


def site_tls_wait(*, site: Site, now=None) -> None:
    """Automatic TLS: from now on check that SITE's names point at its VPS, for up to 48 h, and
    then issue its certificate (sites/tls.py)."""
    now = now or timezone.now()
    _set(
        site,
        tls_state=Site.TlsState.WAITING_DNS,
        tls_reason="",
        tls_waiting_since=now,
        tls_next_check_at=now,
        tls_checks=0,
    )


def site_require_live(*, site: Site, allow_suspended: bool = False) -> None:
    """Refuse work on a site that is going away, or (unless ALLOW_SUSPENDED) suspended."""
    if site.is_going_away:
        raise ApplicationError(409, "site_deleting", "This site is being deleted.")
    if not allow_suspended and site.status == Site.Status.SUSPENDED:
        raise ApplicationError(409, "site_suspended", "This site is suspended.")


def site_deploy_request(*, site: Site, actor=None, requested_by_tenant: bool = False) -> Operation:
    site_require_live(site=site)
    return _queue(
        site,
        "site.deploy",
        actor=actor,
        params={"release": new_release_name()},
        requested_by_tenant=requested_by_tenant,
    )


# --- push-to-deploy ------------------------------------------------------------------------------

# Deliveries remembered per hook: git hosts redeliver recent events (retries, a person's
# "redeliver" button), not ones hundreds of pushes old.
WEBHOOK_DELIVERIES_KEPT = 200


def site_webhook_set(*, site: Site, actor=None, source_ip=None) -> tuple[SiteWebhook, str]:
    """Create SITE's push-to-deploy hook, or rotate its secret (the URL stays, the old secret stops
    working at once). Returns (hook, secret): the secret is shown only now."""
    site_require_live(site=site, allow_suspended=True)
    if not site.repository_url:
        raise ApplicationError(
            409, "no_repository", "This site does not deploy from a repository; set one first."
        )
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        hook, created = SiteWebhook.objects.select_for_update().get_or_create(
            site=site, defaults={"hook_id": secrets.token_urlsafe(24), "secret": secret}
        )
        if not created:
            hook.secret, hook.rotated_at = secret, timezone.now()
            hook.save(update_fields=["secret", "rotated_at"])
        audit_record(
            action="site.webhook_created" if created else "site.webhook_rotated",
            actor=actor,
            tenant=site.tenant,
            target=f"site:{site.domain}",
            source_ip=source_ip,
        )
    return hook, secret


def site_webhook_delete(*, site: Site, actor=None, source_ip=None) -> None:
    """Remove SITE's hook: its URL answers 401 from now on. Removing none is no error."""
    with transaction.atomic():
        deleted, _ = SiteWebhook.objects.filter(site=site).delete()
        if deleted:
            audit_record(
                action="site.webhook_deleted",
                actor=actor,
                tenant=site.tenant,
                target=f"site:{site.domain}",
                source_ip=source_ip,
            )


@dataclass(frozen=True)
class PushOutcome:
    operation: Operation | None  # None: a duplicate whose operation has since been deleted
    duplicate: bool = False  # this delivery was acted on before
    collapsed: bool = False  # joined a deploy already queued


def site_push_receive(
    *, hook: SiteWebhook, delivery_id: str, provider: str, commit: str = "", source_ip=None
) -> PushOutcome:
    """A verified push to the site's branch: queue a deploy, unless this delivery was seen before
    or a deploy is already queued. A queued deploy fetches the branch head when it starts, so it
    ships this push too: a burst of pushes ends in one deploy of the newest commit. The tenant
    asked for it (it configured the hook), so its cap of pending operations applies."""
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=hook.site_id)  # one push of a site at a time
        seen = hook.deliveries.filter(delivery_id=delivery_id).select_related("operation").first()
        if seen is not None:
            return PushOutcome(seen.operation, duplicate=True)
        op = _queued_deploy(site)
        collapsed = op is not None
        if op is None:
            op = site_deploy_request(site=site, requested_by_tenant=True)
        WebhookDelivery.objects.create(hook=hook, delivery_id=delivery_id, operation=op)
        _deliveries_prune(hook)
        audit_record(
            action="site.push_received",
            tenant=site.tenant,
            target=f"site:{site.domain}",
            source_ip=source_ip,
            data={
                "provider": provider,
                "delivery": delivery_id,
                "commit": commit,
                "operation": str(op.id),
                "collapsed": collapsed,
            },
        )
    return PushOutcome(op, collapsed=collapsed)


def _queued_deploy(site: Site) -> Operation | None:
    return (
        Operation.objects.filter(
            kind="site.deploy",
            target_type=site._meta.label_lower,
            target_id=str(site.pk),
            status=Operation.Status.QUEUED,
        )
        .order_by("created_at")
        .first()
    )


def _deliveries_prune(hook: SiteWebhook) -> None:
    kept = hook.deliveries.values_list("pk", flat=True)[:WEBHOOK_DELIVERIES_KEPT]
    hook.deliveries.exclude(pk__in=list(kept)).delete()


def site_rollback_request(
    *, site: Site, release: str = "", actor=None, requested_by_tenant: bool = False
) -> Operation:
    """Switch SITE back to RELEASE, by default the release before the current one. Only a
    superseded release can be chosen: it served before and is still on the server (a pruned one
    is gone, a failed one never served)."""
    site_require_live(site=site)
    previous = site.releases.filter(status=Release.Status.SUPERSEDED).first()
    if not site.current_release or previous is None:
        raise ApplicationError(409, "no_previous_release", "There is no previous release to roll back to.")
    if release:
        previous = _release_to_roll_back_to(site, release)
    return _queue(
        site,
        "site.rollback",
        actor=actor,
        params={"release": previous.name},
        requested_by_tenant=requested_by_tenant,
    )


def _release_to_roll_back_to(site: Site, name: str) -> Release:
    chosen = site.releases.filter(name=name).first()
    if chosen is None:
        message = f"{site.domain} has no release {name}."
        raise ApplicationError(404, "not_found", message, {"release": [message]})
    if chosen.status != Release.Status.SUPERSEDED:
        message = (
            f"Release {name} is {chosen.status}: only a superseded release, still on the server, "
            "can be rolled back to."
        )
        raise ApplicationError(409, "release_unavailable", message, {"release": [message]})
    return chosen


def site_ssl_request(*, site: Site, actor=None, requested_by_tenant: bool = False) -> Operation:
    site_require_live(site=site)
    return _queue(site, "site.ssl", actor=actor, requested_by_tenant=requested_by_tenant)


def site_suspend(*, site: Site, reason: str, actor=None) -> Operation:
    Site.objects.filter(pk=site.pk).update(suspended_reason=reason[:100])
    audit_record(
        action="site.suspended",
        actor=actor,
        tenant=site.tenant,
        target=f"site:{site.domain}",
        data={"reason": reason},
    )
    return _queue(site, "site.suspend", actor=actor)


def site_unsuspend(*, site: Site, reason: str = "", actor=None) -> Operation:
    Site.objects.filter(pk=site.pk).update(suspended_reason="")
    audit_record(
        action="site.unsuspended",
        actor=actor,
        tenant=site.tenant,
        target=f"site:{site.domain}",
        data={"reason": reason},
    )
    return _queue(site, "site.unsuspend", actor=actor)


def tenant_sites_suspend(*, tenant: Tenant, reason: str, actor=None) -> list[Operation]:
    live = Site.objects.filter(
        tenant=tenant, status__in=[Site.Status.ACTIVE, Site.Status.DEPLOYING, Site.Status.FAILED]
    )
    return [site_suspend(site=site, reason=reason, actor=actor) for site in live.filter(suspended_reason="")]


def tenant_sites_unsuspend(*, tenant: Tenant, reason: str, actor=None) -> list[Operation]:
    """Only sites suspended for REASON come back (a site an admin suspended stays suspended)."""
    held = Site.objects.filter(tenant=tenant, suspended_reason=reason[:100]).exclude(
        status=Site.Status.DELETED
    )
    return [site_unsuspend(site=site, reason=reason, actor=actor) for site in held]


def site_delete_request(
    *, site: Site, actor=None, source_ip=None, requested_by_tenant: bool = False
) -> Operation:
    if site.status == Site.Status.DELETED:
        raise ApplicationError(404, "not_found", "Not found.")
    with transaction.atomic():  # a refused request leaves the site as it was
        Site.objects.filter(pk=site.pk).update(status=Site.Status.DELETING)
        audit_record(
            action="site.delete_requested",
            actor=actor,
            tenant=site.tenant,
            target=f"site:{site.domain}",
            source_ip=source_ip,
        )
        return _queue(site, "site.delete", actor=actor, requested_by_tenant=requested_by_tenant)


# --- remote work ---------------------------------------------------------------------------------


def _site_of(ctx: OperationContext) -> Site:
    return Site.objects.select_related("vps", "tenant").get(pk=int(ctx.operation.target_id))


def _set(site: Site, **fields) -> None:
    Site.objects.filter(pk=site.pk).update(**fields)
    for k, v in fields.items():
        setattr(site, k, v)


def _record_failed(ctx: OperationContext, reason: str) -> None:
    site = Site.objects.filter(pk=int(ctx.operation.target_id)).first()
    if site:
        _set(site, status_reason=reason[:2000])


def site_failure_cleared(*, site: Site) -> None:
    """A success supersedes whatever an earlier failed operation said about the site."""
    _set(site, status_reason="")


def _record_succeeded(ctx: OperationContext) -> None:
    Site.objects.filter(pk=int(ctx.operation.target_id)).update(status_reason="")


def _remote(ctx: OperationContext, site: Site, work) -> dict:
    """Run WORK(agent) over one SSH connection, turning remote failures into operation errors."""
    try:
        with transport_for(site.vps) as transport:
            agent = Agent(transport)
            # The VPS may still run the agent of an older CHOM: upgrade it before relying on it.
            if agent.ensure_installed():
                ctx.log(f"agent on {site.vps.name} upgraded")
            return work(agent) or {}
    except HostKeyMismatch as exc:
        # Staff hear of it now, not at the next health check: nothing was sent to that server.
        fleet_services.vps_host_key_changed(vps=site.vps, message=str(exc))
        raise OperationError(f"SSH to {site.vps.name}: {exc}", transient=exc.transient)
    except TransportError as exc:
        raise OperationError(f"SSH to {site.vps.name}: {exc}", transient=exc.transient)
    except AgentError as exc:
        raise OperationError(str(exc), transient=exc.transient)


def _call(ctx: OperationContext, agent: Agent, subcommand: str, payload: dict):
    result = agent.call(subcommand, payload)
    for line in result.log:
        ctx.log(f"  {line}")
    ctx.changes += result.changed
    return result


# mtail's account reads every site's access log for the per-site request metrics
# (deploy/observability/mtail); the agent skips it on a VPS without the mtail package.
METRICS_LOG_READERS = ("mtail",)


def site_ensure_payload(site: Site) -> dict:
    """The agent's site-ensure input: layout, the tier's resource ceiling (systemd slice, disk
    quota) and the accounts that may read the site's logs besides the site (SITE_LOG_READERS,
    and METRICS_LOG_READERS where they exist)."""
    limits = site.tenant.limits
    return {
        "name": site.unix_user,
        "limits": {
            "memory_max_mb": limits.site_memory_max_mb,
            "cpu_quota_percent": limits.site_cpu_quota_percent,
            "tasks_max": limits.site_tasks_max,
            "disk_quota_mb": limits.site_disk_quota_mb,
        },
        "log_readers": list(settings.SITE_LOG_READERS),
        "log_readers_if_present": list(METRICS_LOG_READERS),
    }


def vhost_spec(site: Site, *, suspended: bool | None = None) -> VhostSpec:
    """The vhost for SITE; unless told otherwise it keeps a suspension (a renewal or any other
    re-render must never lift it)."""
    if suspended is None:
        suspended = site.is_suspended
    kind = site_type(site.type)
    ssl = site.ssl_status == Site.SslStatus.ACTIVE
    # DNS-01 sites (a DNS account): CHOM's own key and chain (agent cert-csr/cert-install).
    cert_dir = f"/var/lib/chom/tls/{site.unix_user}" if site.dns_account_id else ""
    cert_dir = cert_dir or f"/etc/letsencrypt/live/{site.unix_user}"
    return VhostSpec(
        name=site.unix_user,
        domains=tuple(site.all_domains),
        php=kind.uses_php,
        php_fallback=kind.php_fallback,
        ssl_cert=f"{cert_dir}/fullchain.pem" if ssl else "",
        ssl_key=f"{cert_dir}/privkey.pem" if ssl else "",
        suspended=suspended,
        **runtime_spec_fields(site),
    )


def site_release_switched(
    *, site: Site, release: str, commit: str = "", pruned=(), deployed: bool = False
) -> None:
    """Record that RELEASE now serves SITE (after the agent's release-activate, by a deploy, a
    rollback or a restore): its row active (created when new, as after a restore), the one before
    superseded, pruned ones marked, the site pointing at it with no failure reason. A suspended
    site stays suspended."""
    now = timezone.now()
    row, _ = Release.objects.get_or_create(site=site, name=release)
    site.releases.filter(status=Release.Status.ACTIVE).exclude(pk=row.pk).update(
        status=Release.Status.SUPERSEDED
    )
    Release.objects.filter(pk=row.pk).update(
        status=Release.Status.ACTIVE, activated_at=now, error="", **({"commit": commit} if commit else {})
    )
    if pruned:
        site.releases.filter(name__in=list(pruned)).update(status=Release.Status.PRUNED)
    status = Site.Status.SUSPENDED if vhost_spec(site).suspended else Site.Status.ACTIVE
    _set(
        site,
        status=status,
        status_reason="",
        current_release=release,
        **({"last_deployed_at": now} if deployed else {}),
    )
    if site.tls_mode == Site.TlsMode.AUTO and not site.tls_state:
        site_tls_wait(site=site, now=now)  # it serves: its certificate can be asked for


def site_verify(*, site: Site, log=None, accept=None, expected: str = "") -> int:
    """Wait (bounded) until a visitor of the site sees EXPECTED: `systemctl reload nginx` returns
    before the new configuration serves. The visit follows the site's http → https redirect as a
    browser does, so what is checked is the page a person gets on either scheme; a site with an
    active certificate must end on https. By default a suspended site must show the suspension
    page (503) and any other site a non-error answer."""
    if accept is None:
        if vhost_spec(site).suspended:
            accept, expected = (lambda code: code == 503), "the suspended page (503)"
        else:
            accept, expected = (lambda code: code < 500), expected or "a non-error answer"
    deadline = time.monotonic() + settings.SITE_VERIFY_TIMEOUT
    wants_https = site.ssl_status == Site.SslStatus.ACTIVE
    last = ""
    while time.monotonic() < deadline:
        try:
            answers = probe.visit(site.vps.ip_address, probe_host(site.domain))
        except probe.ProbeError as exc:
            last = str(exc)
        else:
            final, path = answers[-1], " → ".join(f"{a.url} {a.status}" for a in answers)
            if any(a.header(SERVED_BY_HEADER) != site.unix_user for a in answers):
                last = f"{path} came from another server block (nginx's default?)"
            elif wants_https and not final.url.startswith("https://"):
                last = f"{path}: no redirect to https although the site has a certificate"
            elif accept(final.status):
                if log:
                    log(f"{path} (as a visitor sees it)")
                return final.status
            else:
                last = path
        time.sleep(0.05)
    raise OperationError(f"a visitor of {site.domain} did not get {expected} on {site.vps.name}: {last}")


@register("site.delete", queue="remote", soft_time_limit=3600, time_limit=3660, on_failure=_record_failed)
def site_delete_run(ctx: OperationContext) -> dict:
    site = _site_of(ctx)
    site_before_delete(site=site, ctx=ctx)  # backups: the final backup
    kind = site_type(site.type)

    def work(agent: Agent):
        ctx.step("nginx vhost", progress=20)
        _call(ctx, agent, "vhost-remove", {"name": site.unix_user})
        if kind.uses_php and site.php_version:
            ctx.step("php-fpm pool", progress=35)
            _call(ctx, agent, "pool-remove", {"name": site.unix_user, "php_version": site.php_version})
        for subcommand, payload in kind.post_remove(site):
            _call(ctx, agent, subcommand, payload)
        if kind.uses_database and site.db_name:
            ctx.step("database", progress=55)
            _call(ctx, agent, "db-remove", {"name": site.db_name, "user": site.db_user})
        ctx.step("files, user, certificate", progress=75)
        _call(ctx, agent, "site-remove", {"name": site.unix_user})

    _remote(ctx, site, work)
    _set(site, status=Site.Status.DELETED, status_reason="")
    site_hostnames_sync(site=site)  # its names are free for another site
    alert_resolve(name="ssl_failed", key=site.domain)
    return {"deleted": site.domain}
