"""Who may do what, over every route: the cases come from the URL resolver, the expectations from
one table (route name → rule). A route without a rule fails the suite, so a new endpoint cannot
ship without a decision. Each case starts from the same objects in two tenants (made once, every
case rolled back after it); a refused request must leave the database as it was.

Rules (README "Roles and scopes" says the same in words):
  public            anyone
  tenant-read       any member of the tenant (any token scope); another tenant gets 404
  tenant-write      owner/admin/member with a write token; viewer or read token 403
  owner-admin       owner/admin with a write token
  sensitive         owner/admin with a write token, although it is a GET (hands out secrets)
  staff-read        staff tokens; staff-write: staff write tokens
  +staff            suffix: staff tokens may do it too (read or write as the base rule says)
  webhook-signature no persona holds the shared secret/signature: refused for all
  metrics-token     METRICS_TOKEN or a staff session
  dashboard-staff   a staff session; everyone else is sent to log in
  session           any signed-in session (the 2FA page, one's own API tokens)
  session-own       a signed-in person's own object; someone else's is a 404
  admin:*           the one namespace rule: Django's admin, staff sessions only
"""

import re
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from backups.models import Backup
from chom.models import ApiToken, AuditEvent, Membership, Operation
from chom.services import membership_add, staff_token_create, tenant_create, token_create, user_get_or_create
from fleet.models import Vps
from observability.models import Alert, NotificationChannel
from sites.models import (
    BasicAuthUser,
    CronJob,
    DnsAccount,
    Redirect,
    Release,
    ResponseHeader,
    Site,
    SiteHostname,
    Worker,
)

MARKER = "globex-marker-7f3a"  # in every object of the other tenant: never shown to acme's personas

RULES = {
    # core
    "health": "public",
    "metrics": "metrics-token",
    "login": "public",
    "logout": "public",
    "two-factor": "session",
    "api-schema": "public",
    "api-docs": "public",
    "api-not-found": "public",
    "api-tenant": {"GET": "tenant-read"},
    "api-tokens": {"GET": "tenant-read+staff", "POST": "tenant-write+staff"},
    # Another member's token: owners/admins only. Staff tokens see only staff tokens (404).
    "api-token": {"DELETE": "owner-admin+staff-scoped"},
    "api-operations": {"GET": "tenant-read+staff"},
    "api-operation": {"GET": "tenant-read+staff"},
    "dashboard": "dashboard-staff",
    "operation-list": "dashboard-staff",
    "operation-detail": "dashboard-staff",
    "operation-live": "dashboard-staff",  # the htmx fragment (the whole page without HX-Request)
    "operation-cancel": "dashboard-staff",
    "operation-retry": "dashboard-staff",
    "audit-log": "dashboard-staff",
    "tenant-list": "dashboard-staff",
    "tenant-detail": "dashboard-staff",
    "tenant-tier": "dashboard-staff",
    "tenant-suspend": "dashboard-staff",
    "tenant-unsuspend": "dashboard-staff",
    "tenant-member-add": "dashboard-staff",
    "tenant-member-role": "dashboard-staff",
    "tenant-member-remove": "dashboard-staff",
    "tenant-member-invite": "dashboard-staff",
    "tenant-token-create": "dashboard-staff",
    "tenant-token-revoke": "dashboard-staff",
    # The invitation's one-time link (an invalid one answers a page saying so); then the one page
    # a non-staff person sees: their own API tokens.
    "account-welcome": "public",
    "account-tokens": "session",
    "account-token-revoke": "session-own",
    # fleet
    "api-vps-list": {"GET": "staff-read", "POST": "staff-write"},
    "api-vps": {"GET": "staff-read", "PATCH": "staff-write", "DELETE": "staff-write"},
    "api-vps-bootstrap": {"POST": "staff-write"},
    "api-fleet-key": {"GET": "staff-read"},
    "vps-list": "dashboard-staff",
    "vps-detail": "dashboard-staff",
    "vps-create": "dashboard-staff",
    "vps-adopt": "dashboard-staff",  # POST: reads the server's host key, changes nothing
    "vps-adopt-confirm": "dashboard-staff",
    "vps-bootstrap": "dashboard-staff",
    "vps-capacity": "dashboard-staff",
    "vps-cordon": "dashboard-staff",
    "vps-delete": "dashboard-staff",  # GET: the typed-confirmation page
    "cloud-account-list": "dashboard-staff",
    "cloud-account-edit": "dashboard-staff",  # GET/POST: add or change; the token is write-only
    "cloud-account-default": "dashboard-staff",
    "cloud-account-delete": "dashboard-staff",
    # sites
    "api-dns-accounts": {"GET": "tenant-read", "POST": "owner-admin"},  # the token is write-only
    "api-dns-account": {"GET": "tenant-read", "DELETE": "owner-admin"},
    "api-sites": {"GET": "tenant-read+staff", "POST": "tenant-write"},
    "api-site": {"GET": "tenant-read+staff", "PATCH": "tenant-write+staff", "DELETE": "tenant-write+staff"},
    "api-site-deploy": {"POST": "tenant-write"},
    "api-site-rollback": {"POST": "tenant-write"},
    "api-site-releases": {"POST": "tenant-write"},  # an uploaded archive: as a deploy
    "api-site-ssl": {"POST": "tenant-write"},
    "api-site-webhook": {"POST": "tenant-write", "DELETE": "tenant-write"},
    "api-site-deploy-key": {"POST": "tenant-write"},
    "api-site-git-host-key": {"DELETE": "tenant-write"},  # the next deploy pins the server's key anew
    "api-site-environment": {"GET": "tenant-read", "PUT": "tenant-write", "PATCH": "tenant-write"},
    "api-site-environment-reveal": {"POST": "sensitive"},  # hands out the values; audited
    "api-site-workers": {"GET": "tenant-read+staff", "POST": "tenant-write+staff"},
    "api-site-worker": {
        "GET": "tenant-read+staff",
        "PATCH": "tenant-write+staff",
        "DELETE": "tenant-write+staff",
    },
    "api-site-cron-jobs": {"GET": "tenant-read+staff", "POST": "tenant-write+staff"},
    "api-site-cron-job": {
        "GET": "tenant-read+staff",
        "PATCH": "tenant-write+staff",
        "DELETE": "tenant-write+staff",
    },
    "api-site-redirects": {"GET": "tenant-read+staff", "POST": "tenant-write+staff"},
    "api-site-redirect": {"GET": "tenant-read+staff", "DELETE": "tenant-write+staff"},
    "api-site-headers": {"GET": "tenant-read+staff", "POST": "tenant-write+staff"},
    "api-site-header": {"GET": "tenant-read+staff", "DELETE": "tenant-write+staff"},
    # The list shows paths and usernames only (never a hash); a password is write-only.
    "api-site-basic-auth": {"GET": "tenant-read+staff", "POST": "tenant-write+staff"},
    "api-site-basic-auth-user": {"GET": "tenant-read+staff", "DELETE": "tenant-write+staff"},
    "api-site-php-settings": {"GET": "tenant-read+staff", "PATCH": "tenant-write+staff"},
    "api-site-suspend": {"POST": "staff-write"},
    "api-site-unsuspend": {"POST": "staff-write"},
    "site-list": "dashboard-staff",
    "site-detail": "dashboard-staff",
    "site-create": "dashboard-staff",
    "dns-account-list": "dashboard-staff",  # every tenant's DNS accounts, never a token
    "dns-account-create": "dashboard-staff",
    "dns-account-delete": "dashboard-staff",
    "site-deploy": "dashboard-staff",
    "site-rollback": "dashboard-staff",
    "site-ssl": "dashboard-staff",
    "site-suspend": "dashboard-staff",
    "site-unsuspend": "dashboard-staff",
    "site-delete": "dashboard-staff",  # GET: the typed-confirmation page
    # the site page's runtime controls (sites/runtime_views.py): POST actions
    "site-cron-job-create": "dashboard-staff",
    "site-cron-job-enabled": "dashboard-staff",
    "site-cron-job-delete": "dashboard-staff",
    "site-worker-create": "dashboard-staff",
    "site-worker-enabled": "dashboard-staff",
    "site-worker-delete": "dashboard-staff",
    "site-redirect-create": "dashboard-staff",
    "site-redirect-delete": "dashboard-staff",
    "site-header-create": "dashboard-staff",
    "site-header-delete": "dashboard-staff",
    "site-basic-auth-set": "dashboard-staff",
    "site-basic-auth-delete": "dashboard-staff",
    "site-php-settings": "dashboard-staff",
    # backups
    "api-site-backups": {"GET": "tenant-read+staff", "POST": "tenant-write+staff"},
    "api-backup": {"GET": "tenant-read+staff"},
    "api-backup-download": {"GET": "sensitive+staff"},
    "api-backup-restore": {"POST": "tenant-write+staff"},
    "api-backup-verify": {"POST": "tenant-write+staff"},
    "backup-detail": "dashboard-staff",
    "backup-restore": "dashboard-staff",
    "backup-verify": "dashboard-staff",
    "backup-create": "dashboard-staff",
    "backup-download": "dashboard-staff",  # POST: audited as backup.downloaded
    # observability
    "api-site-metrics": {"GET": "tenant-read+staff"},
    "api-site-logs": {"GET": "tenant-read+staff"},
    "api-site-uptime": {"GET": "tenant-read+staff"},
    "api-vps-metrics": {"GET": "staff-read"},
    "api-alerts": {"GET": "tenant-read+staff"},
    "api-alert": {"GET": "tenant-read+staff"},  # another tenant's alert is a 404
    "api-notification-channels": {"GET": "tenant-read", "POST": "owner-admin"},
    "api-notification-channel": {"GET": "tenant-read", "DELETE": "owner-admin"},
    "api-notification-channel-test": {"POST": "owner-admin"},  # sends a sample to the channel
    "observability-sd-targets": "webhook-signature",
    "observability-sd-probes": "webhook-signature",
    "observability-alertmanager-webhook": "webhook-signature",
    "observability-loki-push": "webhook-signature",  # a VPS's own log-shipping token only
    "observability-alerts": "dashboard-staff",
    "observability-vps-metrics": "dashboard-staff",
    "observability-site-metrics": "dashboard-staff",
    "observability-site-logs": "dashboard-staff",
    "observability-alert-history": "dashboard-staff",
    "observability-alert": "dashboard-staff",
    "observability-alert-acknowledge": "dashboard-staff",
    "observability-alert-silence": "dashboard-staff",
    "observability-silences": "dashboard-staff",
    "observability-silence-expire": "dashboard-staff",
    # billing
    "api-billing": {"GET": "tenant-read"},
    "api-billing-checkout": {"POST": "owner-admin"},
    "api-billing-portal": {"POST": "owner-admin"},
    "api-billing-invoices": {"GET": "tenant-read"},
    "stripe-webhook": "webhook-signature",
    "site-git-webhook": "webhook-signature",  # a git host holding the site hook's secret
    "billing-dashboard": "dashboard-staff",
}
# Function views (not DRF): the methods they serve. DRF views say theirs themselves.
FUNCTION_VIEW_METHODS = {
    "health": ["GET"],
    "metrics": ["GET"],
    "login": ["GET", "POST"],
    "logout": ["POST"],
    "two-factor": ["GET", "POST"],
    "account-welcome": ["GET", "POST"],
    "account-tokens": ["GET", "POST"],
    "account-token-revoke": ["POST"],
    "api-not-found": ["GET", "POST", "PUT", "PATCH", "DELETE"],
    "dashboard": ["GET"],
    "operation-list": ["GET"],
    "operation-detail": ["GET"],
    "operation-live": ["GET"],
    "operation-cancel": ["POST"],
    "operation-retry": ["POST"],
    "audit-log": ["GET"],
    "tenant-list": ["GET", "POST"],
    "tenant-detail": ["GET"],
    "tenant-tier": ["POST"],
    "tenant-suspend": ["POST"],
    "tenant-unsuspend": ["POST"],
    "tenant-member-add": ["POST"],
    "tenant-member-role": ["POST"],
    "tenant-member-remove": ["POST"],
    "tenant-member-invite": ["POST"],
    "tenant-token-create": ["POST"],
    "tenant-token-revoke": ["POST"],
    "vps-list": ["GET"],
    "vps-detail": ["GET"],
    "vps-create": ["GET", "POST"],
    "vps-adopt": ["GET", "POST"],
    "vps-adopt-confirm": ["POST"],
    "vps-bootstrap": ["POST"],
    "vps-capacity": ["POST"],
    "vps-cordon": ["POST"],
    "vps-delete": ["GET", "POST"],
    "cloud-account-list": ["GET"],
    "cloud-account-edit": ["GET", "POST"],
    "cloud-account-default": ["POST"],
    "cloud-account-delete": ["POST"],
    "site-list": ["GET"],
    "site-detail": ["GET"],
    "site-create": ["GET", "POST"],
    "dns-account-list": ["GET"],
    "dns-account-create": ["POST"],
    "dns-account-delete": ["POST"],
    "site-deploy": ["POST"],
    "site-rollback": ["POST"],
    "site-ssl": ["POST"],
    "site-suspend": ["POST"],
    "site-unsuspend": ["POST"],
    "site-delete": ["GET", "POST"],
    "site-cron-job-create": ["POST"],
    "site-cron-job-enabled": ["POST"],
    "site-cron-job-delete": ["POST"],
    "site-worker-create": ["POST"],
    "site-worker-enabled": ["POST"],
    "site-worker-delete": ["POST"],
    "site-redirect-create": ["POST"],
    "site-redirect-delete": ["POST"],
    "site-header-create": ["POST"],
    "site-header-delete": ["POST"],
    "site-basic-auth-set": ["POST"],
    "site-basic-auth-delete": ["POST"],
    "site-php-settings": ["POST"],
    "backup-detail": ["GET"],
    "backup-restore": ["POST"],
    "backup-verify": ["POST"],
    "backup-create": ["POST"],
    "backup-download": ["POST"],
    "observability-sd-targets": ["GET"],
    "observability-sd-probes": ["GET"],
    "observability-alertmanager-webhook": ["POST"],
    "observability-loki-push": ["POST"],
    "observability-alerts": ["GET"],
    "observability-vps-metrics": ["GET"],
    "observability-site-metrics": ["GET"],
    "observability-site-logs": ["GET"],
    "observability-alert-history": ["GET"],
    "observability-alert": ["GET"],
    "observability-alert-acknowledge": ["POST"],
    "observability-alert-silence": ["POST"],
    "observability-silences": ["GET"],
    "observability-silence-expire": ["POST"],
    "stripe-webhook": ["POST"],
    "billing-dashboard": ["GET"],
}
# Valid bodies, so that an allowed write is a 2xx rather than a validation error.
BODIES = {
    ("api-tokens", "POST"): {"name": "matrix"},
    ("api-vps-list", "POST"): {"name": "matrix-vps", "provider": "manual", "ip_address": "192.0.2.99"},
    ("api-vps", "PATCH"): {"max_sites": 40},
    ("api-sites", "POST"): {"domain": "matrix.example.com", "type": "static"},
    ("api-dns-accounts", "POST"): {"name": "matrix", "provider": "cloudflare", "token": "cf-token"},
    ("api-site", "PATCH"): {"aliases": ["www.shop.example.com"]},
    ("api-site-environment", "PUT"): {"variables": {"GREETING": "hello"}},
    ("api-site-cron-jobs", "POST"): {"schedule": "*/5 * * * *", "command": ["php", "artisan", "inspire"]},
    ("api-site-cron-job", "PATCH"): {"enabled": False},
    ("api-site-environment", "PATCH"): {"variables": {"GREETING": None}},
    ("api-site-workers", "POST"): {"name": "matrix", "command": ["sleep", "60"]},
    ("api-site-worker", "PATCH"): {"enabled": False},
    ("api-site-redirects", "POST"): {"from": "/old", "to": "https://shop.example.org/"},
    ("api-site-headers", "POST"): {"name": "X-Matrix", "value": "yes"},
    ("api-site-basic-auth", "POST"): {"path": "/", "username": "matrix", "password": "matrix password"},
    ("api-site-php-settings", "PATCH"): {"settings": {"memory_limit": "128M"}},  # static: a 400
    ("api-site-backups", "POST"): {"kind": "full"},
    ("api-billing-checkout", "POST"): {"tier": "enterprise"},
    ("api-notification-channels", "POST"): {
        "kind": "email",
        "address": "ops@acme.test",
        "events": ["deploy.failed"],
    },
}
PERSONAS = [
    "anonymous",
    "bad-token",
    "other-owner",
    "viewer",
    "member-read",
    "member-write",
    "admin",
    "owner",
    "staff-read",
    "staff-write",
    "session-user",
    "session-staff",
]
TENANT_PERSONAS = {"viewer", "member-read", "member-write", "admin", "owner"}
WRITERS = {"member-write", "admin", "owner"}
MANAGERS = {"admin", "owner"}


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str
    kwargs: tuple[str, ...]
    methods: tuple[str, ...]


def _walk(resolver, prefix="", namespace=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(
                entry,
                prefix + str(entry.pattern),
                namespace + (f"{entry.namespace}:" if entry.namespace else ""),
            )
        elif isinstance(entry, URLPattern):
            yield namespace + (entry.name or ""), prefix + str(entry.pattern), entry


def _methods(name: str, pattern: URLPattern) -> tuple[str, ...]:
    view = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
    if name in FUNCTION_VIEW_METHODS:
        return tuple(FUNCTION_VIEW_METHODS[name])
    if name.startswith("admin:"):
        return ("GET",)
    if view is not None and hasattr(view, "http_method_names"):
        own = [m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)]
        return tuple(own)
    return ()


def routes() -> list[Route]:
    found = []
    for name, pattern, entry in _walk(get_resolver()):
        kwargs = tuple(re.findall(r"<(?:\w+:)?(\w+)>", pattern)) + tuple(entry.pattern.regex.groupindex)
        if name.endswith(":"):  # an unnamed route (the admin has a few): known by its pattern
            name += pattern
        found.append(Route(name, pattern, tuple(dict.fromkeys(kwargs)), _methods(name, entry)))
    return found


ROUTES = routes()
CASES = [(r, m, p) for r in ROUTES for m in r.methods for p in PERSONAS]


def test_every_route_has_a_rule_and_the_matrix_is_complete():
    missing = [r.name or r.pattern for r in ROUTES if not r.name.startswith("admin:") and r.name not in RULES]
    assert missing == [], f"routes without an authorization rule: {missing}"
    no_methods = [r.name for r in ROUTES if not r.methods]
    assert no_methods == [], f"routes whose methods the matrix cannot tell: {no_methods}"
    stale = sorted(set(RULES) - {r.name for r in ROUTES})
    assert stale == [], f"rules for routes that no longer exist: {stale}"
    for route in ROUTES:
        rule = RULES.get(route.name)
        if isinstance(rule, dict):
            assert set(rule) == set(route.methods), (route.name, sorted(rule), route.methods)
    print(f"\n{len(ROUTES)} routes × {len(PERSONAS)} personas, {len(CASES)} cases")


# --- the world each case runs in -------------------------------------------------------------------


@dataclass
class World:
    acme: object
    site: Site
    vps: Vps
    backup: Backup
    operation: Operation
    owner_token: ApiToken
    auth: dict  # persona -> Authorization header value or "session:<user pk>"
    device: int  # a TOTP device, for the admin's device pages


def _world() -> World:
    acme, owner = tenant_create(slug="acme", tier="pro", owner_email="alice@acme.test")
    globex, other = tenant_create(slug="globex", tier="enterprise", owner_email="charlie@globex.test")
    tokens = {"owner": owner.plaintext, "other-owner": other.plaintext}
    for persona, email, role, scope in [
        ("admin", "adam@acme.test", Membership.Role.ADMIN, "write"),
        ("member-write", "bob@acme.test", Membership.Role.MEMBER, "write"),
        ("member-read", "bob@acme.test", Membership.Role.MEMBER, "read"),
        ("viewer", "victor@acme.test", Membership.Role.VIEWER, "write"),
    ]:
        membership = membership_add(tenant=acme, email=email, role=role)
        tokens[persona] = token_create(user=membership.user, tenant=acme, name=persona, scope=scope).plaintext
    staff_write = staff_token_create(email="ops@chom.test")
    tokens["staff-write"] = staff_write.plaintext
    tokens["staff-read"] = token_create(
        user=staff_write.token.user, tenant=None, name="ro", scope="read"
    ).plaintext
    ci = token_create(user=owner.token.user, tenant=acme, name="ci")
    vps = Vps.objects.create(
        name="web-1",
        provider="manual",
        ip_address="192.0.2.10",
        status="active",
        max_sites=50,
        php_versions=["8.2"],
    )
    site = Site.objects.create(
        tenant=acme, vps=vps, domain="shop.example.com", type="static", status="active",
        unix_user="site1", current_release="r2",
    )  # fmt: skip
    SiteHostname.objects.create(site=site, hostname=site.domain)
    Redirect.objects.create(site=site, source="/gone", destination="/here")
    ResponseHeader.objects.create(site=site, name="X-Shop", value="1")
    BasicAuthUser.objects.create(site=site, username="shop", password_hash="$2b$10$" + "a" * 53)
    Release.objects.create(site=site, name="r1", status="superseded")
    Release.objects.create(site=site, name="r2", status="active")
    theirs = Site.objects.create(
        tenant=globex,
        vps=vps,
        domain=f"{MARKER}.example.com",
        type="static",
        status="active",
        unix_user="site2",
    )
    SiteHostname.objects.create(site=theirs, hostname=theirs.domain)
    artefacts = {"files": {"key": "sites/1/b/files.tar.gz", "size": 1, "sha256": "0" * 64}}
    backup = Backup.objects.create(
        site=site, status="succeeded", artefacts=artefacts, manifest_key="sites/1/b/m"
    )
    Backup.objects.create(site=theirs, status="succeeded", error=MARKER)
    operation = Operation.objects.create(
        kind="site.deploy", tenant=acme, target_type="sites.site", target_id=str(site.pk), status="succeeded"
    )
    Operation.objects.create(
        kind="site.deploy",
        tenant=globex,
        target_type="sites.site",
        target_id=str(theirs.pk),
        error=MARKER,
        status="failed",
    )
    Alert.objects.create(fingerprint="a:1", name="ssl_failed", summary="acme alert", tenant=acme)
    Alert.objects.create(fingerprint="g:1", name="ssl_failed", summary=MARKER, tenant=globex)
    NotificationChannel.objects.create(tenant=acme, name="ops", kind="email", target="ops@acme.test")
    CronJob.objects.create(site=site, schedule="@hourly", command=["php", "artisan", "report"])
    CronJob.objects.create(site=theirs, schedule="@daily", command=["echo", MARKER])
    # Read just now: a GET does not go to the (unreachable) VPS for their state.
    Worker.objects.create(site=site, name="queue", command=["sleep", "60"], status_checked_at=timezone.now())
    Worker.objects.create(site=theirs, name=MARKER, command=[MARKER], status_checked_at=timezone.now())
    DnsAccount.objects.create(tenant=acme, name="zones", provider="digitalocean", token="do-token")
    DnsAccount.objects.create(tenant=globex, name=MARKER, provider="cloudflare", token="cf-token")
    NotificationChannel.objects.create(tenant=globex, name=MARKER, kind="email", target="x@globex.test")
    session_user = user_get_or_create(email="alice@acme.test")
    session_staff = user_get_or_create(email="root@chom.test", is_staff=True)
    colleague = user_get_or_create(email="colleague@chom.test", is_staff=True)
    device = TOTPDevice.objects.create(user=colleague, name="phone", confirmed=True)
    auth = {p: f"Bearer {t}" for p, t in tokens.items()}
    auth |= {"bad-token": "Bearer chom_nope_nope", "anonymous": ""}
    auth |= {"session-user": f"session:{session_user.pk}", "session-staff": f"session:{session_staff.pk}"}
    return World(acme, site, vps, backup, operation, ci.token, auth, device.pk)


def _kwargs(route: Route, world: World) -> dict:
    by_route = {
        "api-token": world.owner_token.pk,
        "api-operation": world.operation.pk,
        "operation-detail": world.operation.pk,
        "operation-live": world.operation.pk,
        "operation-cancel": world.operation.pk,
        "operation-retry": world.operation.pk,
        "api-vps": world.vps.pk,
        "api-vps-bootstrap": world.vps.pk,
        "api-vps-metrics": world.vps.pk,
        "vps-detail": world.vps.pk,
        "vps-bootstrap": world.vps.pk,
        "vps-capacity": world.vps.pk,
        "vps-cordon": world.vps.pk,
        "vps-delete": world.vps.pk,
        "observability-vps-metrics": world.vps.pk,
        "api-backup": world.backup.pk,
        "api-backup-download": world.backup.pk,
        "api-backup-restore": world.backup.pk,
        "api-backup-verify": world.backup.pk,
        "backup-detail": world.backup.pk,
        "backup-restore": world.backup.pk,
        "backup-verify": world.backup.pk,
        "backup-download": world.backup.pk,
    }
    if "otp_totp_totpdevice" in route.name:
        by_route[route.name] = world.device
    if route.name in ("tenant-token-revoke", "account-token-revoke"):
        by_route[route.name] = world.owner_token.pk  # alice's (the session-user's) "ci" token
    if route.name.startswith("tenant-member-"):
        by_route[route.name] = Membership.objects.get(tenant=world.acme, user__email="bob@acme.test").pk
    if route.name in ("api-dns-account", "dns-account-delete"):
        by_route[route.name] = DnsAccount.objects.get(tenant=world.acme).pk
    if route.name.startswith("api-notification-channel"):
        by_route[route.name] = NotificationChannel.objects.get(tenant=world.acme).pk
    if route.name.startswith("observability-alert-") or route.name in ("observability-alert", "api-alert"):
        by_route[route.name] = Alert.objects.get(fingerprint="a:1").pk  # acme's
    worker = Worker.objects.get(site=world.site).pk
    values = {"pk": by_route.get(route.name, world.site.pk), "site_pk": world.site.pk, "object_id": "1",
              "app_label": "billing", "content_type_id": "1", "id": "1", "url": "nope",
              "slug": world.acme.slug, "uidb64": "MQ", "token": "no-such-invitation",
              "silence_id": "6f1b3a3e-0000-4000-8000-000000000000", "provider": "digitalocean",
              "worker_id": worker,
              "job_id": CronJob.objects.filter(site=world.site).values("pk")[0]["pk"]}  # fmt: skip
    if "otp_totp_totpdevice" in route.name:
        values["object_id"] = world.device
    values["redirect_id"] = Redirect.objects.get(site=world.site).pk
    values["header_id"] = ResponseHeader.objects.get(site=world.site).pk
    values["user_id"] = BasicAuthUser.objects.get(site=world.site).pk
    return {k: values[k] for k in route.kwargs}


def _snapshot() -> dict:
    counts = {}
    for model in apps.get_models():
        label = model._meta.label
        if label.startswith(("axes.", "sessions.", "otp_", "django_celery_beat.")) or model is AuditEvent:
            continue
        counts[label] = model.objects.count()
    counts["audit (not auth)"] = AuditEvent.objects.exclude(action__startswith="auth.").count()
    return counts


# --- expectations --------------------------------------------------------------------------------------


def expected(rule: str, persona: str, method: str, has_object: bool) -> str:
    """One of: ok, unauthenticated, forbidden, not_found, login, refused."""
    if rule == "public":
        return "ok"
    if rule == "webhook-signature":
        return "refused"
    if rule == "metrics-token":
        return "ok" if persona == "session-staff" else "unauthenticated"
    if rule in ("dashboard-staff", "admin"):
        return "ok" if persona == "session-staff" else "login"
    if rule == "session":
        return "ok" if persona.startswith("session-") else "login"
    if rule == "session-own":
        return {"session-user": "ok", "session-staff": "not_found"}.get(persona, "login")
    if persona in ("anonymous", "bad-token", "session-user", "session-staff"):
        return "unauthenticated"
    base, _, with_staff = rule.partition("+")
    if persona.startswith("staff-") and with_staff == "staff-scoped":
        return "forbidden" if persona == "staff-read" else "not_found"
    if persona.startswith("staff-"):
        if base in ("staff-read",):
            return "ok"
        if base == "staff-write":
            return "ok" if persona == "staff-write" else "forbidden"
        if not with_staff:
            return "forbidden"
        writes = base in ("tenant-write", "owner-admin", "sensitive")
        return "forbidden" if writes and persona == "staff-read" else "ok"
    if base in ("staff-read", "staff-write"):
        return "forbidden"
    may = {
        "tenant-read": TENANT_PERSONAS,
        "tenant-write": WRITERS,
        "owner-admin": MANAGERS,
        "sensitive": MANAGERS,
    }[base]
    if persona == "other-owner":
        # Another tenant's object is a 404, whatever the rule; a collection is their own.
        return "not_found" if has_object else "ok"
    return "ok" if persona in may else "forbidden"


def _request(client: Client, world: World, route: Route, method: str, persona: str):
    if route.name == "api-not-found":
        path = "/api/v1/nope"
    elif route.name.startswith("admin:admin/"):  # unnamed: fill the pattern in
        values = _kwargs(route, world)
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route.pattern)
        path = re.sub(r"\^|\$|\(\?P<\w+>[^)]*\)", "", path)
    else:
        path = reverse(route.name, kwargs=_kwargs(route, world))
    header = world.auth[persona]
    extra = {}
    if header.startswith("session:"):
        from django.contrib.auth import get_user_model

        client.force_login(get_user_model().objects.get(pk=int(header.split(":")[1])))
    elif header:
        extra["HTTP_AUTHORIZATION"] = header
    body = BODIES.get((route.name, method), {})
    call = getattr(client, method.lower())
    if method == "GET":
        return call(path, **extra)
    return call(path, body, content_type="application/json", **extra)


def check(route: Route, method: str, persona: str, made: tuple[World, dict]) -> str | None:
    """Run one case (rolled back after) in MADE, the module's world and its row counts; return
    what was wrong, or None."""
    with transaction.atomic():
        problem = _check(route, method, persona, *made)
        transaction.set_rollback(True)
    return problem


def _check(route: Route, method: str, persona: str, world: World, before: dict) -> str | None:
    """BEFORE: the row counts of WORLD, which a refused request must leave as they are."""
    rule = "admin" if route.name.startswith("admin:") else RULES[route.name]
    if isinstance(rule, dict):
        rule = rule[method]
    want = expected(rule, persona, method, has_object="pk" in route.kwargs or "site_pk" in route.kwargs)
    response = _request(Client(), world, route, method, persona)
    status = response.status_code
    body = response.content.decode("utf-8", "replace")
    where = f"{route.name} {method} as {persona} (rule {rule}): wanted {want}, got {status}"
    if status >= 500 and status not in (502, 503):  # 502/503: an upstream CHOM uses is down
        return f"{where}: server error"
    if want == "ok" and rule == "admin":  # the admin's own answers (403/404 without a real object)
        if status == 302 and "login" in response.get("Location", ""):
            return where
    elif want == "ok" and rule in ("dashboard-staff", "session", "session-own"):
        served = status == 200 or (
            status == 503 and route.name.endswith(("metrics", "logs"))
        )  # no Prometheus
        if not served and not (method == "POST" and status == 302 and "login" not in response["Location"]):
            return where
    elif want == "ok":
        if status in (401, 403, 404) and route.name not in ("api-not-found",):
            return f"{where}: {body[:200]}"
    elif want == "unauthenticated" and status != 401:
        return where
    elif want == "forbidden" and status != 403:
        return f"{where}: {body[:200]}"
    elif want == "not_found" and status != 404:
        return f"{where}: {body[:200]}"
    elif want == "login" and not (status == 302 and "login" in response.get("Location", "")):
        if not (route.name in ("admin:login", "admin:logout") and status in (200, 302, 405)):
            return where
    elif want == "refused" and status not in (400, 401, 403):
        return where
    if persona in TENANT_PERSONAS and MARKER in body:
        return f"{where}: shows the other tenant's objects"
    if want != "ok" and _snapshot() != before:
        return f"{where}: a refused request changed the database"
    return None


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """The two tenants' objects and their row counts, made once per module (per xdist worker) in a
    transaction rolled back when it ends: each case runs in a savepoint of it, rolled back after
    the case, so every case starts from exactly these rows (building them per case was most of the
    matrix's time)."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield _world(), _snapshot()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


def _cron_status_read_just_now(world: World) -> None:
    """The sites' cron runs count as read just now: a GET does not try to reach 192.0.2.10 (a
    connect timeout per cron case)."""
    for site in Site.objects.filter(vps=world.vps):
        cache.set(f"chom:cron-status-checked:{site.pk}", 1, timeout=600)


@pytest.fixture
def matrix_settings(settings):
    settings.METRICS_ALLOWED_IPS = []
    settings.METRICS_TOKEN = "metrics-secret-nobody-has"
    settings.PROMETHEUS_SD_TOKEN = "sd-secret-nobody-has"
    settings.ALERTMANAGER_WEBHOOK_TOKEN = "am-secret-nobody-has"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_nobody_has"
    # Rate limits count per token in the cache: a private, empty one per case.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "matrix"}
    }
    cache.clear()
    return settings


@pytest.mark.parametrize(
    ("route", "method", "persona"), CASES, ids=[f"{r.name}-{m}-{p}" for r, m, p in CASES]
)
def test_the_authorization_matrix(world, db, matrix_settings, route, method, persona):
    _cron_status_read_just_now(world[0])
    problem = check(route, method, persona, world)
    assert problem is None, problem


def test_no_api_view_replaces_the_one_permission():
    """Views describe themselves (audience, manager/sensitive methods); none restates permissions."""
    from rest_framework.settings import api_settings

    for name, _, pattern in _walk(get_resolver()):
        view = getattr(pattern.callback, "cls", None)
        if view is None or name in ("api-schema", "api-docs"):  # public by their as_view() kwargs
            continue
        assert view.permission_classes == api_settings.DEFAULT_PERMISSION_CLASSES, name


def test_the_matrix_catches_a_view_whose_permission_was_removed(world, db, matrix_settings, monkeypatch):
    """Can the matrix fail? With one view opened to everyone, it reports that view."""
    from fleet.api.views import VpsListView

    monkeypatch.setattr(VpsListView, "permission_classes", [])
    route = next(r for r in ROUTES if r.name == "api-vps-list")
    problems = [check(route, "GET", persona, world) for persona in PERSONAS]
    assert any(p and "api-vps-list GET as owner" in p for p in problems), problems
