"""TLS for sites: certificates from the ACME CA (HTTP-01, issued by certbot on the VPS), the
vhost with TLS and the redirect, daily renewal of certificates close to expiry. A failure keeps
the old certificate serving and raises an alert."""

from datetime import timedelta

import requests
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chom.alerts import alert_raise, alert_resolve
from chom.models import Operation
from chom.operations import OperationContext, OperationError, register
from fleet.remote.agent_client import Agent
from sites.configs import render_vhost
from sites.models import Site
from sites.services import (
    _call,
    _queue,
    _record_succeeded,
    _remote,
    _set,
    _site_of,
    site_ensure_payload,
    site_verify,
    vhost_spec,
)


def _ssl_failed(ctx: OperationContext, reason: str) -> None:
    site = Site.objects.filter(pk=int(ctx.operation.target_id)).first()
    if site is None:
        return
    if site.ssl_status != Site.SslStatus.ACTIVE:
        _set(site, ssl_status=Site.SslStatus.FAILED)
    alert_raise(
        name="ssl_failed",
        key=site.domain,
        summary=f"certificate for {site.domain} could not be issued: {reason}",
        severity="warning",
        tenant=site.tenant,
        labels={"site": site.domain},
    )


def _acme_ca_bundle() -> str:
    path = settings.ACME_CA_BUNDLE_FILE
    return open(path).read() if path else ""


def _point_local_dns(ctx: OperationContext, site: Site) -> None:
    """make demo / e2e only: the local ACME CA resolves names through pebble-challtestsrv, which
    CHOM tells where each domain lives (in production, customers' DNS does that)."""
    base = settings.LOCAL_DNS_MANAGEMENT_URL
    for domain in site.all_domains:
        try:
            for path, body in (
                ("clear-a", {"host": f"{domain}."}),
                ("add-a", {"host": f"{domain}.", "addresses": [site.vps.ip_address]}),
            ):
                requests.post(f"{base}/{path}", json=body, timeout=5).raise_for_status()
        except requests.RequestException as exc:
            raise OperationError(f"local DNS at {base} did not take {domain}: {exc}", transient=True)
    ctx.log(f"local DNS: {', '.join(site.all_domains)} -> {site.vps.ip_address}")


@register(
    "site.ssl",
    queue="remote",
    soft_time_limit=300,
    time_limit=360,
    on_failure=_ssl_failed,
    on_success=_record_succeeded,
)
def site_ssl_run(ctx: OperationContext) -> dict:
    site = _site_of(ctx)
    if site.ssl_status != Site.SslStatus.ACTIVE:
        _set(site, ssl_status=Site.SslStatus.PENDING)
    if settings.LOCAL_DNS_MANAGEMENT_URL:
        _point_local_dns(ctx, site)

    def work(agent: Agent) -> dict:
        # The challenge webroot is root-owned outside the site's home: make sure it exists and the
        # live vhost serves the challenge from it (sites set up before it moved there).
        ctx.step("challenge webroot", progress=20)
        _call(ctx, agent, "site-ensure", site_ensure_payload(site))
        _call(ctx, agent, "vhost-apply", {"name": site.unix_user, "content": render_vhost(vhost_spec(site))})
        ctx.step(f"certificate for {', '.join(site.all_domains)}", progress=30)
        payload = {
            "name": site.unix_user,
            "domains": site.all_domains,
            "email": settings.ACME_EMAIL or f"hostmaster@{site.domain}",
            "server": settings.ACME_DIRECTORY_URL,
            "renew_before_days": settings.SSL_RENEW_BEFORE_DAYS,
        }
        bundle = _acme_ca_bundle()
        if bundle:
            payload["ca_bundle"] = bundle
        issued = _call(ctx, agent, "cert-issue", payload)
        _set(site, ssl_status=Site.SslStatus.ACTIVE)
        ctx.step("nginx vhost with TLS", progress=80)
        vhost = {"name": site.unix_user, "content": render_vhost(vhost_spec(site))}
        applied = _call(ctx, agent, "vhost-apply", vhost)
        if issued.changed and not applied.changed:
            # nginx reads certificates only when it loads its configuration: a renewal that leaves
            # the vhost as it was would otherwise keep serving the old certificate.
            _call(ctx, agent, "reload", {"service": "nginx"})
        return issued.data

    cert = _remote(ctx, site, work)
    site_verify(site=site, log=ctx.log)
    expires = parse_datetime(cert.get("not_after", ""))
    _set(site, ssl_expires_at=expires)
    alert_resolve(name="ssl_failed", key=site.domain)
    ctx.log(f"certificate valid until {expires:%Y-%m-%d %H:%M} UTC" if expires else "certificate installed")
    return {"not_after": cert.get("not_after", "")}


def sites_renew_certificates(*, now=None) -> list[Operation]:
    """Daily: queue renewal for certificates within SSL_RENEW_BEFORE_DAYS of expiry."""
    now = now or timezone.now()
    cutoff = now + timedelta(days=settings.SSL_RENEW_BEFORE_DAYS)
    due = Site.objects.filter(ssl_status=Site.SslStatus.ACTIVE, ssl_expires_at__lt=cutoff).exclude(
        status__in=[Site.Status.DELETING, Site.Status.DELETED]
    )
    return [_queue(site, "site.ssl") for site in due]
