"""TLS for sites: certificates from the ACME CA (HTTP-01, issued by certbot on the VPS), the
vhost with TLS and the redirect, daily renewal of certificates close to expiry. A failure keeps
the old certificate serving and raises an alert.

Automatic TLS (`Site.tls_mode` auto, the default for new sites) is a state machine on the site row:

- `waiting_dns`: entered when the site first serves (`site_release_switched`) or gains an alias.
  The beat job `sites.tls_check_dns` (every minute) claims due sites and asks DNS, from the
  control plane, whether every name of the site has an address (A, and AAAA if any) and only the
  site's VPS address. Not yet: `tls_reason` says what each name resolves to now, the next check
  comes 1 min later, doubling up to 1 h, until 48 h after `tls_waiting_since` → `failed`.
- `issuing`: every name points at the VPS; a `site.ssl` operation is queued (one at a time).
- `active`: the certificate is installed and HTTPS with the redirect serves; `certificate.issued`.
- `failed`: the reason is shown and `certificate.failed` sent. An issuance that fails inside the
  48 h window is tried again (DNS re-checked first) after at least ISSUE_RETRY_MIN; the tenant is
  told on the first failure of a waiting period and when CHOM gives up, not on every retry.

A suspended, undeployed or going-away site is not checked; an unsuspended one is checked again at
once (and fails if its 48 h are over). `POST /ssl` works in both modes and moves the state too."""

import logging
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chom.alerts import alert_raise, alert_resolve
from chom.events import event_emit
from chom.models import Operation
from chom.operations import OperationContext, OperationError, operation_create, register
from fleet.remote.agent_client import Agent
from sites import acme_dns, dns_check
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

logger = logging.getLogger(__name__)

DNS_WINDOW = timedelta(hours=48)
FIRST_CHECK_DELAY = timedelta(minutes=1)
MAX_CHECK_DELAY = timedelta(hours=1)
# ACME CAs limit failed validations per name (Let's Encrypt: 5 an hour): retry no faster.
ISSUE_RETRY_MIN = timedelta(minutes=15)
# A claimed site is left alone this long by other beat runs (a check takes seconds).
CHECK_LEASE = timedelta(minutes=5)
CHECK_BATCH = 50
# The renewal sweep tells the tenant about a certificate this close to expiry: its renewals
# (queued from SSL_RENEW_BEFORE_DAYS on) have not succeeded.
EXPIRING_NOTICE_DAYS = 14


def _ssl_failed(ctx: OperationContext, reason: str) -> None:
    site = Site.objects.filter(pk=int(ctx.operation.target_id)).select_related("vps", "tenant").first()
    if site is None:
        return
    if site.ssl_status != Site.SslStatus.ACTIVE:
        _set(site, ssl_status=Site.SslStatus.FAILED)
    if site.tls_state == Site.TlsState.ISSUING:
        _tls_issue_failed(site, reason, operation=ctx.operation)
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


def _local_dns_point(site: Site) -> None:
    """make demo / e2e only: the local ACME CA resolves names through pebble-challtestsrv, which
    CHOM tells where each domain lives (in production, customers' DNS does that)."""
    base = settings.LOCAL_DNS_MANAGEMENT_URL
    for domain in site.all_domains:
        for path, body in (
            ("clear-a", {"host": f"{domain}."}),
            ("add-a", {"host": f"{domain}.", "addresses": [site.vps.ip_address]}),
        ):
            requests.post(f"{base}/{path}", json=body, timeout=5).raise_for_status()


def _point_local_dns(ctx: OperationContext, site: Site) -> None:
    base = settings.LOCAL_DNS_MANAGEMENT_URL
    try:
        _local_dns_point(site)
    except requests.RequestException as exc:
        raise OperationError(f"local DNS at {base} did not take {site.domain}: {exc}", transient=True)
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
    if site.tls_state != Site.TlsState.ACTIVE:  # a renewal of a serving certificate stays active
        _set(site, tls_state=Site.TlsState.ISSUING, tls_next_check_at=None)
    if settings.LOCAL_DNS_MANAGEMENT_URL:
        _point_local_dns(ctx, site)
    if site.dns_account_id:
        cert = acme_dns.issue(ctx, site)
        return _ssl_installed(ctx, site, cert)

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
        ctx.step("nginx vhost with TLS", progress=80)
        # Rendered with TLS, recorded as active once nginx serves it: until then the row (and the
        # uptime probes it lists) still say http only, and a refused vhost leaves it so.
        site.ssl_status = Site.SslStatus.ACTIVE
        vhost = {"name": site.unix_user, "content": render_vhost(vhost_spec(site))}
        applied = _call(ctx, agent, "vhost-apply", vhost)
        _set(site, ssl_status=Site.SslStatus.ACTIVE)
        if issued.changed and not applied.changed:
            # nginx reads certificates only when it loads its configuration: a renewal that leaves
            # the vhost as it was would otherwise keep serving the old certificate.
            _call(ctx, agent, "reload", {"service": "nginx"})
        return issued.data | {"changed": issued.changed}

    return _ssl_installed(ctx, site, _remote(ctx, site, work))


def _ssl_installed(ctx: OperationContext, site: Site, cert: dict) -> dict:
    site_verify(site=site, log=ctx.log)
    expires = parse_datetime(cert.get("not_after", ""))
    _set(site, ssl_expires_at=expires)
    alert_resolve(name="ssl_failed", key=site.domain)
    ctx.log(f"certificate valid until {expires:%Y-%m-%d %H:%M} UTC" if expires else "certificate installed")
    _tls_issued(site, expires=expires, changed=bool(cert.get("changed", True)))
    return {"not_after": cert.get("not_after", "")}


def sites_renew_certificates(*, now=None) -> list[Operation]:
    """Daily: queue renewal for certificates within SSL_RENEW_BEFORE_DAYS of expiry."""
    now = now or timezone.now()
    cutoff = now + timedelta(days=settings.SSL_RENEW_BEFORE_DAYS)
    due = Site.objects.filter(ssl_status=Site.SslStatus.ACTIVE, ssl_expires_at__lt=cutoff).exclude(
        status__in=[Site.Status.DELETING, Site.Status.DELETED]
    )
    notice = now + timedelta(days=min(EXPIRING_NOTICE_DAYS, settings.SSL_RENEW_BEFORE_DAYS))
    for site in due.filter(ssl_expires_at__lt=notice).select_related("tenant", "vps"):
        _expiring(site, now=now)
    return [_queue(site, "site.ssl") for site in due]


def _expiring(site: Site, *, now: datetime) -> None:
    days = max(0, (site.ssl_expires_at - now).days)
    event_emit(
        event="certificate.expiring",
        tenant=site.tenant,
        site=site,
        message=(
            f"The certificate for {site.domain} expires on {site.ssl_expires_at:%Y-%m-%d %H:%M} UTC "
            f"(in {days} days) and has not been renewed yet; CHOM tries again today. Check that "
            f"{', '.join(site.all_domains)} still point at {site.vps.ip_address}."
        ),
    )


# --- automatic TLS --------------------------------------------------------------------------------


def _check_delay(checks: int) -> timedelta:
    """After the CHECKS-th check that did not resolve: 1 min, 2, 4, ... at most 1 h."""
    return min(FIRST_CHECK_DELAY * 2 ** max(0, checks - 1), MAX_CHECK_DELAY)


def _deadline(site: Site) -> datetime | None:
    return site.tls_waiting_since + DNS_WINDOW if site.tls_waiting_since else None


def _due(now: datetime) -> Q:
    return Q(
        tls_mode=Site.TlsMode.AUTO,
        tls_state__in=[Site.TlsState.WAITING_DNS, Site.TlsState.FAILED],
        tls_next_check_at__lte=now,
        status__in=[Site.Status.ACTIVE, Site.Status.DEPLOYING],
        suspended_reason="",
    )


def tls_checks_run(*, now: datetime | None = None, limit: int = CHECK_BATCH) -> dict[str, int]:
    """Beat, every minute: check the DNS of up to LIMIT due auto-TLS sites. Each is claimed first
    (its next check moved past this run, under a row lock that a concurrent run skips), so two
    runs never check, let alone issue for, the same site; the DNS lookups hold no lock."""
    now = now or timezone.now()
    lease = now + CHECK_LEASE
    with transaction.atomic():
        claimed = list(
            Site.objects.select_for_update(skip_locked=True)
            .filter(_due(now))
            .order_by("tls_next_check_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        Site.objects.filter(pk__in=claimed).update(tls_next_check_at=lease)
    outcomes = {"issuing": 0, "waiting_dns": 0, "failed": 0}
    for site in Site.objects.filter(pk__in=claimed).select_related("vps", "tenant"):
        state = tls_check_site(site=site, now=now, lease=lease)
        if state in outcomes:
            outcomes[state] += 1
    return outcomes


def _describe(lookup, ip: str) -> str | None:
    """Why one name does not point at IP yet (None: it does)."""
    if isinstance(lookup, dns_check.DnsError):
        return f"could not be looked up ({lookup})"
    if lookup.missing:
        return "does not exist in DNS"
    if not lookup.addresses:
        return "has no A or AAAA record"
    if lookup.addresses != {ip}:
        return f"resolves to {', '.join(sorted(lookup.addresses))}"
    return None


def tls_check_site(*, site: Site, now: datetime, lease: datetime) -> str:
    """One DNS check of a claimed SITE; returns the state it moved to ("" when the site changed
    meanwhile, e.g. an alias was added, and this check no longer applies)."""
    if settings.LOCAL_DNS_MANAGEMENT_URL and site.tls_checks == 0:
        _point_local_dns_quietly(site)
    ip = site.vps.ip_address or ""
    claimed = Site.objects.filter(pk=site.pk, tls_next_check_at=lease, tls_state=site.tls_state)
    if site.dns_account_id and ip:
        # DNS-01 proves control of the zone, not where its names point: issue at once.
        return _start_issuing(site, claimed, checks=site.tls_checks + 1)
    results = dns_check.lookup_all(site.all_domains)
    problems = {name: _describe(result, ip) for name, result in results.items()}
    problems = {name: why for name, why in problems.items() if why}
    checks = site.tls_checks + 1
    if ip and not problems:
        return _start_issuing(site, claimed, checks=checks)
    reason = (
        "; ".join(f"{name} {why}" for name, why in problems.items()) if ip else "the server has no address"
    )
    deadline = _deadline(site) or now
    if now >= deadline:
        reason = f"{', '.join(site.all_domains)} did not resolve to {ip} within 48 h ({reason})"
        if claimed.update(
            tls_state=Site.TlsState.FAILED, tls_reason=reason, tls_next_check_at=None, tls_checks=checks
        ):
            _notify_failed(site, reason)
            return Site.TlsState.FAILED
        return ""
    later = min(now + _check_delay(checks), deadline)
    reason = f"waiting for DNS: {reason}; every name must point only at {ip} (next check {later:%H:%M} UTC)"
    changed = claimed.update(
        tls_state=Site.TlsState.WAITING_DNS, tls_reason=reason, tls_next_check_at=later, tls_checks=checks
    )
    return Site.TlsState.WAITING_DNS if changed else ""


def _start_issuing(site: Site, claimed, *, checks: int) -> str:
    with transaction.atomic():
        if not claimed.update(
            tls_state=Site.TlsState.ISSUING, tls_reason="", tls_next_check_at=None, tls_checks=checks
        ):
            return ""
        if not _ssl_in_flight(site):
            operation_create(kind="site.ssl", tenant=site.tenant, target=site)
    return Site.TlsState.ISSUING


def _ssl_in_flight(site: Site) -> bool:
    return Operation.objects.filter(
        kind="site.ssl",
        target_type=site._meta.label_lower,
        target_id=str(site.pk),
        status__in=[Operation.Status.QUEUED, Operation.Status.RUNNING],
    ).exists()


def _point_local_dns_quietly(site: Site) -> None:
    """make demo: its sites' names exist only in the demo's DNS server, where CHOM puts them when
    it starts waiting (a customer's DNS does in production). A failure: the check says so."""
    try:
        _local_dns_point(site)
    except requests.RequestException as exc:
        base = settings.LOCAL_DNS_MANAGEMENT_URL
        logger.warning("local DNS at %s did not take %s: %s", base, site.domain, exc)


def _tls_issued(site: Site, *, expires: datetime | None, changed: bool) -> None:
    was = site.tls_state
    _set(site, tls_state=Site.TlsState.ACTIVE, tls_reason="", tls_next_check_at=None, tls_checks=0)
    if changed or was != Site.TlsState.ACTIVE:
        until = f", valid until {expires:%Y-%m-%d} UTC" if expires else ""
        names = ", ".join(site.all_domains)
        message = f"{site.domain} serves HTTPS with a certificate for {names}{until}."
        event_emit(event="certificate.issued", tenant=site.tenant, site=site, message=message)


def _tls_issue_failed(site: Site, reason: str, *, operation: Operation) -> None:
    """An issuance failed: an auto site inside its DNS window is tried again later."""
    now = timezone.now()
    deadline = _deadline(site) if site.tls_mode == Site.TlsMode.AUTO else None
    retry = None
    if deadline and now < deadline:
        retry = min(now + max(ISSUE_RETRY_MIN, _check_delay(site.tls_checks)), deadline)
    text = f"the certificate could not be issued: {reason}"
    if retry:
        text += f" (CHOM checks DNS and tries again at {retry:%Y-%m-%d %H:%M} UTC)"
    _set(site, tls_state=Site.TlsState.FAILED, tls_reason=text[:2000], tls_next_check_at=retry)
    if retry is None or not _failed_before(site, operation):
        _notify_failed(site, text)


def _failed_before(site: Site, operation: Operation) -> bool:
    """An earlier issuance of this waiting period failed (and the tenant was told then)."""
    if not site.tls_waiting_since:
        return False
    return (
        Operation.objects.filter(
            kind="site.ssl",
            target_type=site._meta.label_lower,
            target_id=str(site.pk),
            status__in=[Operation.Status.FAILED, Operation.Status.CANCELLED],
            finished_at__gte=site.tls_waiting_since,
        )
        .exclude(pk=operation.pk)
        .exists()
    )


def _notify_failed(site: Site, reason: str) -> None:
    event_emit(event="certificate.failed", tenant=site.tenant, site=site, message=reason)
