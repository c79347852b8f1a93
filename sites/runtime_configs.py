"""Rendering a site's runtime controls (redirects, response headers, basic auth, PHP settings) into
its nginx vhost and PHP-FPM pool.

nginx has no general escaping: inside a double-quoted parameter `\\"` and `\\\\` are the only
escapes that matter, and `$` always starts a variable (there is no way to write a literal `$` in a
string that takes variables). So every value is validated to a safe character set before it is
stored (sites/runtime.py) -- no `$`, no control characters, ASCII only -- AND rendered here inside
double quotes with `"` and `\\` escaped; `quoted` refuses what validation should already have
refused, so a row written around the services cannot inject a directive either.

Basic auth is applied once per server, not per location: `auth_basic` and `auth_basic_user_file`
take variables, and a `map` on the (decoded, normalised) `$uri` picks the realm of the longest
matching prefix, or `off`. Every location of the site (PHP under the prefix included) is therefore
protected, whatever its own match; only the ACME challenge location turns it off.
"""

import hashlib
import re
from dataclasses import dataclass

# Characters a header value may hold: visible ASCII and space, without `$` (an nginx variable).
HEADER_VALUE_RE = re.compile(r"[\x20-\x23\x25-\x7e]*")
HEADER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
# A URL path CHOM renders into a location / map: conservative, and no `$`, quote or backslash.
PATH_RE = re.compile(r"/|(/[A-Za-z0-9._~@+,=:-]+)+")
# A redirect target: RFC 3986 characters without `$` (write %24), quotes, backslash or space.
URL_CHARS_RE = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!&'()*+,;=%-]+")
PHP_VALUE_RE = re.compile(r"[0-9]{1,6}M?")
PHP_SETTINGS = (
    "memory_limit",
    "upload_max_filesize",
    "post_max_size",
    "max_execution_time",
    "max_input_vars",
)
DEFAULT_MEMORY_LIMIT = "256M"
DEFAULT_BODY_MB = 64
DEFAULT_FASTCGI_TIMEOUT = 60


@dataclass(frozen=True)
class RedirectRule:
    source: str  # a path: "/old" (prefix: also everything below "/old/")
    match: str  # "exact" | "prefix"
    destination: str  # an absolute http(s) URL or a path
    status: int  # 301, 302, 307, 308
    preserve_query: bool


@dataclass(frozen=True)
class AuthRealm:
    prefix: str  # "/" or "/path" (no trailing slash)
    key: str  # the htpasswd file's name


def quoted(value: str) -> str:
    """VALUE as one double-quoted nginx parameter in which nothing is a variable."""
    if not HEADER_VALUE_RE.fullmatch(value):
        raise ValueError(f"unsafe value for an nginx config: {value[:40]!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def htpasswd_dir(name: str) -> str:
    """Root-owned, outside the site's home; the files are root:www-data 0640 (the agent's
    htpasswd-apply)."""
    return f"/var/lib/chom/htpasswd/{name}"


def realm_key(prefix: str) -> str:
    return hashlib.sha256(prefix.encode()).hexdigest()[:16]


def _var(name: str, what: str) -> str:
    return f"$chom_{what}_{name.replace('-', '_')}"


def _prefix_regex(prefix: str) -> str:
    """`^PREFIX(/|$)` with every character that is not a letter, digit or / in a character class,
    so the pattern needs no backslash."""
    body = "".join(c if c.isalnum() or c == "/" else f"[{c}]" for c in prefix)
    return f"~^{body}(/|$)"


def render_auth_maps(name: str, realms: tuple[AuthRealm, ...]) -> str:
    """http-level maps (before the server blocks): the realm file of the longest matching prefix."""
    if not realms:
        return ""
    for realm in realms:
        if not PATH_RE.fullmatch(realm.prefix) or not re.fullmatch(r"[0-9a-f]{16}", realm.key):
            raise ValueError(f"unsafe basic-auth realm {realm.prefix[:40]!r}")
    default = next((r.key for r in realms if r.prefix == "/"), "")
    entries = [
        f'    "{_prefix_regex(r.prefix)}" "{r.key}";'
        for r in sorted(realms, key=lambda r: (-len(r.prefix), r.prefix))
        if r.prefix != "/"
    ]
    lines = [f"map $uri {_var(name, 'auth')} {{", f'    default "{default}";', *entries, "}"]
    lines += [
        f"map {_var(name, 'auth')} {_var(name, 'realm')} {{",
        '    "" off;',
        '    default "Restricted";',
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_auth(name: str, realms: tuple[AuthRealm, ...]) -> list[str]:
    if not realms:
        return []
    return [
        f"    auth_basic {_var(name, 'realm')};",
        f"    auth_basic_user_file {htpasswd_dir(name)}/{_var(name, 'auth')};",
    ]


def render_headers(headers: tuple[tuple[str, str], ...]) -> list[str]:
    lines = []
    for header, value in headers:
        if not HEADER_NAME_RE.fullmatch(header):
            raise ValueError(f"unsafe header name {header[:40]!r}")
        lines.append(f"    add_header {quoted(header)} {quoted(value)} always;")
    return lines


def _return(rule: RedirectRule) -> str:
    if not URL_CHARS_RE.fullmatch(rule.destination) or rule.status not in (301, 302, 307, 308):
        raise ValueError(f"unsafe redirect target {rule.destination[:40]!r}")
    target = quoted(rule.destination)
    if rule.preserve_query:  # the only variables: nginx's own, never a customer's text
        target = target[:-1] + '$is_args$args"'
    return f"return {rule.status} {target};"


def render_redirects(redirects: tuple[RedirectRule, ...]) -> list[str]:
    lines = []
    for rule in redirects:
        if not PATH_RE.fullmatch(rule.source):
            raise ValueError(f"unsafe redirect source {rule.source[:40]!r}")
        lines.append(f"    location = {quoted(rule.source)} {{ {_return(rule)} }}")
        if rule.match == "prefix":
            lines.append(f"    location ^~ {quoted(rule.source + '/')} {{ {_return(rule)} }}")
    return lines


def render_php_values(settings: dict) -> list[str]:
    """php_admin_value lines for the allow-listed settings (memory_limit always: CHOM's default)."""
    values = {"memory_limit": DEFAULT_MEMORY_LIMIT} | dict(settings)
    lines = []
    for key in PHP_SETTINGS:
        if key not in values:
            continue
        value = str(values[key])
        if not PHP_VALUE_RE.fullmatch(value):
            raise ValueError(f"unsafe PHP setting {key}={value[:20]!r}")
        lines.append(f"php_admin_value[{key}] = {value}")
    unknown = set(values) - set(PHP_SETTINGS)
    if unknown:
        raise ValueError(f"PHP settings outside the allow-list: {sorted(unknown)}")
    return lines


def megabytes(value: str) -> int:
    return int(str(value).rstrip("M"))


def body_limit_mb(settings: dict) -> int:
    """nginx's client_max_body_size follows the site's PHP upload limits (default 64 MiB)."""
    sizes = [megabytes(settings[k]) for k in ("upload_max_filesize", "post_max_size") if k in settings]
    return max(sizes) if sizes else DEFAULT_BODY_MB


def fastcgi_timeout(settings: dict) -> int:
    """A longer max_execution_time is useless if nginx gives up on PHP after 60 s."""
    seconds = int(settings.get("max_execution_time", 0))
    return max(DEFAULT_FASTCGI_TIMEOUT, seconds + 10) if seconds else DEFAULT_FASTCGI_TIMEOUT


def spec_fields(site) -> dict:
    """The VhostSpec fields of SITE's runtime controls, read from its rows."""
    settings = site.php_settings or {}
    realms = sorted({u.path_prefix for u in site.basic_auth_users.all()})
    return {
        "redirects": tuple(
            RedirectRule(r.source, r.match, r.destination, r.status_code, r.preserve_query)
            for r in site.redirects.order_by("id")
        ),
        "headers": tuple((h.name, h.value) for h in site.response_headers.order_by("id")),
        "auth": tuple(AuthRealm(prefix, realm_key(prefix)) for prefix in realms),
        "client_max_body_mb": body_limit_mb(settings),
        "fastcgi_read_timeout": fastcgi_timeout(settings),
    }


def htpasswd_files(site) -> dict[str, list[list[str]]]:
    """The agent's htpasswd-apply input: realm file name → [[username, bcrypt hash], ...]."""
    files: dict[str, list[list[str]]] = {}
    for user in site.basic_auth_users.order_by("path_prefix", "username"):
        files.setdefault(realm_key(user.path_prefix), []).append([user.username, user.password_hash])
    return files
