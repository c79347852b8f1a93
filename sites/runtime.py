"""A site's runtime controls: redirects, response headers, basic auth and PHP settings.

Each is a row (or Site.php_settings) checked here against a strict character set before it is
saved, then an Operation (`site.runtime`) re-renders the site's nginx vhost and PHP-FPM pool and
applies them on the VPS without a new release. The agent validates them (`nginx -t`,
`php-fpm -t`) and keeps the previous config serving when they fail. A value refused here changes
nothing, neither in the database nor on the VPS.

Decisions (see sites/runtime_configs.py for how they are rendered):
- `$` is refused in every value (header values, redirect targets): nginx has no escape for it.
  A redirect target can say %24 instead.
- Header names are letters, digits and `-` (every real header; RFC 7230 tokens allow more, but
  `$`, `'` and friends in a name would only be trouble in a config). Headers nginx or CHOM set
  themselves, hop-by-hop headers, and headers that would break the response (framing, cookies,
  authentication, redirects) are refused.
- Basic-auth passwords are hashed with bcrypt (`$2b$`, what Debian's libxcrypt -- and so
  nginx's crypt(3) -- reads); CHOM never stores or sends the password itself.
- A prefix redirect sends every path below the prefix to the one target (no path is appended:
  nginx's decoded `$uri` in a Location header is the classic CRLF injection).
"""

import re
from urllib.parse import urlsplit

import bcrypt
from django.db import transaction

from chom.errors import ApplicationError
from chom.models import Operation
from chom.operations import OperationContext, register
from chom.services import audit_record
from fleet.remote.agent_client import Agent
from sites.configs import render_pool, render_vhost
from sites.models import BasicAuthUser, Redirect, ResponseHeader, Site
from sites.runtime_configs import (
    HEADER_NAME_RE,
    HEADER_VALUE_RE,
    PATH_RE,
    PHP_SETTINGS,
    URL_CHARS_RE,
    htpasswd_files,
    megabytes,
)
from sites.services import (
    _call,
    _queue,
    _record_failed,
    _record_succeeded,
    _remote,
    _site_of,
    site_require_live,
    vhost_spec,
)
from sites.types import site_type

MAX_REDIRECTS = 100
MAX_HEADERS = 30
MAX_AUTH_USERS = 50
MAX_HEADER_VALUE = 1024  # nginx reads a config parameter into a 4 KiB buffer
MAX_URL = 2000
MAX_PATH = 500
REDIRECT_STATUSES = (301, 302, 307, 308)
USERNAME_RE = re.compile(r"[A-Za-z0-9._@-]{1,64}")
ACME_PATH = "/.well-known/acme-challenge"

# Set by nginx for every answer, by CHOM for every site, or changing how the answer is framed,
# routed or authenticated: a second copy would break clients, or lie about CHOM's own headers.
REFUSED_HEADERS = frozenset(
    h.lower()
    for h in (
        # hop-by-hop (RFC 7230 6.1) and framing
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Content-Length", "Content-Encoding", "Content-Range",
        "Content-Type", "Host",
        # nginx's own
        "Date", "Server", "Location", "ETag", "Last-Modified", "Accept-Ranges", "Status",
        "WWW-Authenticate", "Authorization",
        # state: cookies belong to the application, not to every static file
        "Set-Cookie", "Set-Cookie2",
        # CHOM's own (sites/configs.py)
        "X-Chom-Site", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy",
        "Permissions-Policy", "Strict-Transport-Security",
    )
)  # fmt: skip


def _invalid(field: str, message: str) -> ApplicationError:
    return ApplicationError(400, "invalid_input", message, {field: [message]})


def _conflict(field: str, message: str) -> ApplicationError:
    return ApplicationError(409, "conflict", message, {field: [message]})


# --- checks --------------------------------------------------------------------------------------


def path_check(value: str, *, field: str) -> str:
    """A normalised ASCII path as nginx matches it ($uri is decoded and normalised): no `..`, `.`,
    `//`, no percent-escapes, no quotes; a trailing slash is dropped ("/old/" is "/old")."""
    if len(value) > MAX_PATH:
        raise _invalid(field, f"Paths are at most {MAX_PATH} characters.")
    if value != "/" and value.endswith("/"):
        value = value[:-1]
    if not PATH_RE.fullmatch(value) or any(part in (".", "..") for part in value.split("/")):
        raise _invalid(
            field,
            "A path starts with / and uses letters, digits and . _ ~ @ + , = : - between single "
            "slashes (no '..', no percent-escapes).",
        )
    if value == ACME_PATH or value.startswith(ACME_PATH + "/") or ACME_PATH.startswith(value + "/"):
        if value != "/":
            raise _invalid(field, "The ACME challenge path stays CHOM's.")
    return value


def destination_check(value: str, *, preserve_query: bool) -> str:
    if not value or len(value) > MAX_URL or not URL_CHARS_RE.fullmatch(value):
        raise _invalid(
            "to",
            f"A URL of at most {MAX_URL} characters, written with URL characters only (no $, "
            "quotes, backslashes, spaces or non-ASCII: percent-encode them).",
        )
    if value.startswith("/"):
        if value.startswith("//"):
            raise _invalid("to", "Write an absolute URL (https://host/...) instead of //host.")
    else:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _invalid("to", "The target is a path (/new) or an http(s) URL with a host.")
    if preserve_query and ("?" in value or "#" in value):
        raise _invalid("to", "This target has its own query or fragment: set preserve_query to false for it.")
    return value


def header_check(name: str, value: str) -> None:
    if not HEADER_NAME_RE.fullmatch(name):
        raise _invalid("name", "Header names are letters, digits and -, at most 64.")
    if name.lower() in REFUSED_HEADERS or name.lower().startswith(("x-chom-", "proxy-")):
        raise _invalid("name", f"{name} is set by nginx or CHOM, or would break responses.")
    if len(value) > MAX_HEADER_VALUE:
        raise _invalid("value", f"Header values are at most {MAX_HEADER_VALUE} characters.")
    if not HEADER_VALUE_RE.fullmatch(value):
        raise _invalid(
            "value",
            "Header values are printable ASCII without $ (nginx would read a variable) and "
            "without control characters.",
        )


def _positive(value, *, field: str, unit: str) -> int:
    text = str(value).strip()
    match = re.fullmatch(r"([0-9]{1,7})" + ("([MmGg])?" if unit == "M" else ""), text)
    if isinstance(value, bool) or not match:
        hint = 'a size such as "256M" or "1G"' if unit == "M" else "a whole number"
        raise _invalid(field, f"{field} is {hint}.")
    number = int(match.group(1))
    if unit == "M" and (match.group(2) or "M").upper() == "G":
        number *= 1024
    return number


PHP_LIMITS = {
    # name: (unit, minimum, tier field)
    "memory_limit": ("M", 32, "php_memory_limit_max_mb"),
    "upload_max_filesize": ("M", 1, "php_upload_max_mb"),
    "post_max_size": ("M", 1, "php_upload_max_mb"),
    "max_execution_time": ("", 1, "php_max_execution_time_max"),
    "max_input_vars": ("", 100, "php_max_input_vars_max"),
}


def php_settings_check(*, site: Site, settings: dict) -> dict:
    """Normalised values ("256M", 120) within the tenant's tier ceilings; None keeps CHOM's
    default."""
    limits = site.tenant.limits
    problems: dict[str, list[str]] = {}
    clean: dict = {}
    for name, value in settings.items():
        if name not in PHP_LIMITS:
            problems[name] = [f"Only {', '.join(PHP_SETTINGS)} can be set."]
            continue
        if value is None:
            clean[name] = None
            continue
        unit, low, tier_field = PHP_LIMITS[name]
        ceiling = getattr(limits, tier_field)
        try:
            number = _positive(value, field=name, unit=unit)
        except ApplicationError as exc:
            problems[name] = [exc.message]
            continue
        if not low <= number <= ceiling:
            problems[name] = [f"{name} is {low}{unit}..{ceiling}{unit} on the {site.tenant.tier} tier."]
            continue
        clean[name] = f"{number}M" if unit == "M" else number
    if problems:
        raise ApplicationError(400, "invalid_input", "Some PHP settings are invalid.", problems)
    return clean


# --- writes --------------------------------------------------------------------------------------


def _locked(site: Site) -> None:
    """One change of a site's runtime controls at a time (counts and conflicts stay true)."""
    Site.objects.select_for_update().filter(pk=site.pk).first()


def _changed(
    site: Site, action: str, *, actor, source_ip, data: dict, requested_by_tenant: bool
) -> Operation:
    audit_record(
        action=action,
        actor=actor,
        tenant=site.tenant,
        target=f"site:{site.domain}",
        source_ip=source_ip,
        data=data,
    )
    return _queue(site, "site.runtime", actor=actor, requested_by_tenant=requested_by_tenant)


def site_redirect_create(
    *,
    site: Site,
    source: str,
    match: str,
    destination: str,
    status_code: int,
    preserve_query: bool,
    actor=None,
    source_ip=None,
    requested_by_tenant: bool = False,
) -> tuple[Redirect, Operation]:
    site_require_live(site=site, allow_suspended=True)
    source = path_check(source, field="from")
    if match == Redirect.Match.PREFIX and source == "/":
        raise _invalid("from", "A prefix redirect of / would move the whole site: use exact, or a path.")
    destination = destination_check(destination, preserve_query=preserve_query)
    if status_code not in REDIRECT_STATUSES:
        raise _invalid("status", f"One of {', '.join(map(str, REDIRECT_STATUSES))}.")
    if destination == source:
        raise _invalid("to", "This redirect would point at itself.")
    with transaction.atomic():
        _locked(site)
        if site.redirects.count() >= MAX_REDIRECTS:
            raise _conflict("from", f"A site has at most {MAX_REDIRECTS} redirects.")
        # Exact and prefix both claim `location = SOURCE`: nginx refuses two of them.
        if site.redirects.filter(source=source).exists():
            raise _conflict("from", f"{source} is redirected already.")
        row = Redirect.objects.create(
            site=site,
            source=source,
            match=match,
            destination=destination,
            status_code=status_code,
            preserve_query=preserve_query,
        )
        op = _changed(
            site,
            "site.redirect_created",
            actor=actor,
            source_ip=source_ip,
            data={"from": source, "match": match, "to": destination, "status": status_code},
            requested_by_tenant=requested_by_tenant,
        )
    return row, op


def site_redirect_delete(
    *, redirect: Redirect, actor=None, source_ip=None, requested_by_tenant: bool = False
) -> Operation:
    site = redirect.site
    site_require_live(site=site, allow_suspended=True)
    with transaction.atomic():
        _locked(site)
        redirect.delete()
        return _changed(
            site,
            "site.redirect_deleted",
            actor=actor,
            source_ip=source_ip,
            data={"from": redirect.source},
            requested_by_tenant=requested_by_tenant,
        )


def site_header_create(
    *, site: Site, name: str, value: str, actor=None, source_ip=None, requested_by_tenant: bool = False
) -> tuple[ResponseHeader, Operation]:
    site_require_live(site=site, allow_suspended=True)
    header_check(name, value)
    with transaction.atomic():
        _locked(site)
        if site.response_headers.count() >= MAX_HEADERS:
            raise _conflict("name", f"A site has at most {MAX_HEADERS} headers.")
        if site.response_headers.filter(name__iexact=name).exists():
            raise _conflict("name", f"{name} is set already: delete it first.")
        row = ResponseHeader.objects.create(site=site, name=name, value=value)
        op = _changed(
            site,
            "site.header_created",
            actor=actor,
            source_ip=source_ip,
            data={"name": name},
            requested_by_tenant=requested_by_tenant,
        )
    return row, op


def site_header_delete(
    *, header: ResponseHeader, actor=None, source_ip=None, requested_by_tenant: bool = False
) -> Operation:
    site = header.site
    site_require_live(site=site, allow_suspended=True)
    with transaction.atomic():
        _locked(site)
        header.delete()
        return _changed(
            site,
            "site.header_deleted",
            actor=actor,
            source_ip=source_ip,
            data={"name": header.name},
            requested_by_tenant=requested_by_tenant,
        )


def password_hash(password: str) -> str:
    """bcrypt, as `$2b$` (Debian's libxcrypt, so nginx's auth_basic, reads it)."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=10)).decode("ascii")


def site_basic_auth_set(
    *,
    site: Site,
    path: str,
    username: str,
    password: str,
    actor=None,
    source_ip=None,
    requested_by_tenant: bool = False,
) -> tuple[BasicAuthUser, Operation]:
    """Add USERNAME to the realm of PATH, or change its password."""
    site_require_live(site=site, allow_suspended=True)
    path = path_check(path, field="path")
    if not USERNAME_RE.fullmatch(username):
        raise _invalid("username", "Usernames are letters, digits and . _ @ -, at most 64.")
    if not 8 <= len(password) <= 72 or len(password.encode("utf-8")) > 72 or "\x00" in password:
        raise _invalid("password", "Passwords are 8 to 72 bytes (bcrypt reads no more), without NUL.")
    hashed = password_hash(password)
    with transaction.atomic():
        _locked(site)
        row = site.basic_auth_users.filter(path_prefix=path, username=username).first()
        if row is None and site.basic_auth_users.count() >= MAX_AUTH_USERS:
            raise _conflict("username", f"A site has at most {MAX_AUTH_USERS} basic-auth users.")
        created = row is None
        if created:
            row = BasicAuthUser.objects.create(
                site=site, path_prefix=path, username=username, password_hash=hashed
            )
        else:
            row.password_hash = hashed
            row.save(update_fields=["password_hash"])
        op = _changed(
            site,
            "site.basic_auth_user_set",
            actor=actor,
            source_ip=source_ip,
            data={"path": path, "username": username, "created": created},
            requested_by_tenant=requested_by_tenant,
        )
    return row, op


def site_basic_auth_delete(
    *, user: BasicAuthUser, actor=None, source_ip=None, requested_by_tenant: bool = False
) -> Operation:
    site = user.site
    site_require_live(site=site, allow_suspended=True)
    with transaction.atomic():
        _locked(site)
        user.delete()
        return _changed(
            site,
            "site.basic_auth_user_deleted",
            actor=actor,
            source_ip=source_ip,
            data={"path": user.path_prefix, "username": user.username},
            requested_by_tenant=requested_by_tenant,
        )


def site_php_settings_update(
    *, site: Site, settings: dict, actor=None, source_ip=None, requested_by_tenant: bool = False
) -> Operation | None:
    """Merge SETTINGS into the site's (None removes one: CHOM's default again). None when nothing
    changes; else the operation that applies the pool and vhost."""
    site_require_live(site=site, allow_suspended=True)
    if not site_type(site.type).uses_php:
        raise _invalid("settings", f"{site.type} sites run no PHP.")
    clean = php_settings_check(site=site, settings=settings)
    with transaction.atomic():
        _locked(site)
        site.refresh_from_db(fields=["php_settings"])
        wanted = {k: v for k, v in ({**site.php_settings, **clean}).items() if v is not None}
        upload, post = wanted.get("upload_max_filesize"), wanted.get("post_max_size")
        if upload and post and megabytes(post) < megabytes(upload):
            raise _invalid("post_max_size", "post_max_size must be at least upload_max_filesize.")
        if wanted == site.php_settings:
            return None
        Site.objects.filter(pk=site.pk).update(php_settings=wanted)
        site.php_settings = wanted
        return _changed(
            site,
            "site.php_settings_changed",
            actor=actor,
            source_ip=source_ip,
            data={"settings": wanted},
            requested_by_tenant=requested_by_tenant,
        )


# --- on the VPS ----------------------------------------------------------------------------------


def htpasswd_apply(ctx: OperationContext, agent: Agent, site: Site, *, prune: bool) -> None:
    """The site's htpasswd files (root:www-data 0640 under /var/lib/chom/htpasswd/NAME). PRUNE
    removes the realms no longer used: only once the vhost stopped naming them."""
    files = htpasswd_files(site)
    if files or prune:
        _call(ctx, agent, "htpasswd-apply", {"name": site.unix_user, "files": files, "prune": prune})


def pool_content(site: Site) -> str:
    return render_pool(name=site.unix_user, php_version=site.php_version, php_settings=site.php_settings)


@register(
    "site.runtime",
    queue="remote",
    soft_time_limit=300,
    time_limit=360,
    on_failure=_record_failed,
    on_success=_record_succeeded,
)
def site_runtime_run(ctx: OperationContext) -> dict:
    """Reads the controls when it runs, so a retry or a later change applies the newest set; the
    agent changes only what differs (a second run: no changes)."""
    site = _site_of(ctx)
    if not site.current_release:
        ctx.log("the site has no release yet: its first deploy renders these settings")
        return {"applied": False}

    def work(agent: Agent) -> None:
        ctx.step("basic-auth users", progress=20)
        htpasswd_apply(ctx, agent, site, prune=False)
        if site_type(site.type).uses_php and site.php_version:
            ctx.step(f"php-fpm pool (PHP {site.php_version})", progress=40)
            pool = {"name": site.unix_user, "php_version": site.php_version, "content": pool_content(site)}
            _call(ctx, agent, "pool-apply", pool)
        ctx.step("nginx vhost", progress=70)
        _call(ctx, agent, "vhost-apply", {"name": site.unix_user, "content": render_vhost(vhost_spec(site))})
        htpasswd_apply(ctx, agent, site, prune=True)

    _remote(ctx, site, work)
    ctx.log(
        f"{ctx.changes} change(s) on {site.vps.name}" if ctx.changes else f"no changes on {site.vps.name}"
    )
    return {"applied": True, "changes": ctx.changes}
