"""Site types as strategies (VitoDeploy's app/SiteTypes): adding a type means adding a class.

A type says what a release is built from, which build steps run, which paths are shared between
releases, what configuration file it gets, and what runs once the release is live."""

import html
import json
import re
import secrets
from base64 import b64encode
from typing import ClassVar

from django.conf import settings
from django.core.checks import Error, register

from sites.git_ssh import git_ssh_source
from sites.models import Site


class SiteType:
    name: ClassVar[str]
    uses_php: ClassVar[bool] = False
    uses_database: ClassVar[bool] = False
    requires_repository: ClassVar[bool] = False
    php_fallback: ClassVar[bool] = False
    shared_paths: ClassVar[tuple[str, ...]] = ()
    build_steps: ClassVar[tuple[str, ...]] = ()
    # The environment API: why a type takes no variables ("" = it takes them), the names CHOM
    # writes into the env file, and which of those the site may set itself.
    environment_refusal: ClassVar[str] = "This site type has no environment variables."
    overridable_env: ClassVar[frozenset[str]] = frozenset()
    caches_config: ClassVar[bool] = False  # Laravel's config:cache bakes the env in

    def source(self, site: Site) -> dict:
        """Where a deploy takes the code from: the repository; without one, the current release
        (an uploaded one is the only copy of the site's code: a redeploy for new aliases or
        another PHP version must not replace it); the placeholder page only before the first."""
        if site.repository_url:
            source = {"type": "git", "url": site.repository_url, "branch": site.repository_branch or "main"}
            ssh = git_ssh_source(site)  # a private repository: the deploy key and pinned host key
            return source | ({"ssh": ssh} if ssh else {})
        if site.current_release:
            return {"type": "copy", "release": site.current_release}
        return self.placeholder(site)

    def placeholder(self, site: Site) -> dict:
        domain = html.escape(site.domain)
        page = (
            f"<!doctype html><html><head><meta charset=utf-8><title>{domain}</title></head>"
            f"<body><h1>{domain}</h1><p>This site is hosted by CHOM and ready for its content.</p>"
            "</body></html>\n"
        )
        return {"type": "placeholder", "html": page}

    def env_file(self, site: Site) -> dict | None:
        """A configuration file written into each release (WordPress's wp-config.php)."""
        return None

    def managed_env(self, site: Site) -> dict[str, str]:
        """CHOM's own values in the site's shared/.env, before the site's variables."""
        return {}

    def managed_env_names(self) -> frozenset[str]:
        """Names a site may not set: CHOM's own, unless the type lets them be overridden."""
        return frozenset(self.managed_env(Site())) - self.overridable_env

    def site_env(self, site: Site, variables: dict[str, str]) -> dict | None:
        """The agent's `site_env` (shared/.env): CHOM's values, those the site overrides left
        out, then the site's own. None for a type without an environment."""
        if self.environment_refusal:
            return None
        managed = {k: v for k, v in self.managed_env(site).items() if k not in variables}
        return {"managed": managed, "variables": dict(variables)}

    def post_activate(self, site: Site, *, first_deploy: bool) -> list[tuple[str, dict]]:
        """Agent calls to make once a release is live: (subcommand, payload)."""
        return []

    def default_workers(self) -> list[dict]:
        """The workers a new site of this type starts with (Worker fields)."""
        return []

    def default_cron_jobs(self) -> list[dict]:
        """The cron jobs a new site of this type starts with (CronJob fields)."""
        return []

    def post_remove(self, site: Site) -> list[tuple[str, dict]]:
        return []


class StaticSite(SiteType):
    name = "static"
    environment_refusal = (
        "A static site has no runtime, so no environment variables: nothing would read them."
    )


class PhpSite(SiteType):
    name = "php"
    uses_php = True
    uses_database = True
    build_steps = ("composer-install", "php-lint")
    environment_refusal = ""

    def managed_env(self, site: Site) -> dict[str, str]:
        return {
            "DB_HOST": "localhost",
            "DB_DATABASE": site.db_name,
            "DB_USERNAME": site.db_user,
            "DB_PASSWORD": site.db_password,
        }


class LaravelSite(PhpSite):
    name = "laravel"
    requires_repository = True
    php_fallback = True
    shared_paths = ("storage",)
    build_steps = (
        "php-lint",
        "composer-install",
        "artisan-storage-link",
        "artisan-migrate",
        "artisan-optimize",
    )
    overridable_env = frozenset(
        {"APP_NAME", "APP_ENV", "APP_DEBUG", "APP_URL", "LOG_CHANNEL", "QUEUE_CONNECTION"}
    )
    caches_config = True

    def managed_env(self, site: Site) -> dict[str, str]:
        return {
            "APP_NAME": site.domain,
            "APP_ENV": "production",
            "APP_DEBUG": "false",
            "APP_KEY": site.app_key,
            "APP_URL": f"https://{site.domain}",
            "LOG_CHANNEL": "stack",
            "DB_CONNECTION": "mysql",
            "DB_HOST": "localhost",
            "DB_PORT": "3306",
            "DB_DATABASE": site.db_name,
            "DB_USERNAME": site.db_user,
            "DB_PASSWORD": site.db_password,
            "QUEUE_CONNECTION": "database",
        }

    def default_workers(self) -> list[dict]:
        # Its queue worker: an ordinary worker (sites/workers.py), editable and deletable.
        command = ["php", "artisan", "queue:work", "--sleep=3", "--tries=3", "--max-time=3600"]
        return [{"name": "queue", "command": command}]

    def default_cron_jobs(self) -> list[dict]:
        # Its scheduler: an ordinary cron job (sites/cron_jobs.py), editable and deletable. It
        # replaces the /etc/cron.d/chom-NAME of older CHOMs, which cron-apply removes.
        return [{"schedule": "* * * * *", "command": ["php", "artisan", "schedule:run"]}]


class WordPressSite(SiteType):
    name = "wordpress"
    uses_php = True
    uses_database = True
    php_fallback = True
    shared_paths = ("wp-content/uploads",)
    environment_refusal = (
        "WordPress sites take no environment variables: WordPress reads its settings from "
        "wp-config.php, which CHOM manages."
    )

    def source(self, site: Site) -> dict:
        """The VPS's own signed `wordpress` package (apt verifies it; the agent copies it into
        the release), unless an archive is configured: a mirror or a pinned upstream release,
        downloaded and checked against its SHA-256."""
        if settings.WORDPRESS_ARCHIVE_URL:
            return {
                "type": "archive",
                "url": settings.WORDPRESS_ARCHIVE_URL,
                "sha256": settings.WORDPRESS_ARCHIVE_SHA256,
                "strip_components": 1,
            }
        return {"type": "distro-package", "package": "wordpress"}

    def env_file(self, site: Site) -> dict:
        secrets_ = json.loads(site.app_key)
        salts = "".join(f"define('{k}', '{v}');\n" for k, v in secrets_["salts"].items())
        content = (
            "<?php\n// Managed by CHOM.\n"
            f"define('DB_NAME', '{site.db_name}');\ndefine('DB_USER', '{site.db_user}');\n"
            f"define('DB_PASSWORD', '{site.db_password}');\ndefine('DB_HOST', 'localhost');\n"
            "define('DB_CHARSET', 'utf8mb4');\ndefine('DB_COLLATE', '');\n"
            f"{salts}$table_prefix = 'wp_';\ndefine('WP_DEBUG', false);\n"
            "define('DISALLOW_FILE_EDIT', true);\n"
            "if (!defined('ABSPATH')) { define('ABSPATH', __DIR__ . '/'); }\n"
            "require_once ABSPATH . 'wp-settings.php';\n"
        )
        return {"path": "wp-config.php", "content": content}

    def post_activate(self, site: Site, *, first_deploy: bool) -> list[tuple[str, dict]]:
        if not first_deploy:
            return []
        secrets_ = json.loads(site.app_key)
        return [
            (
                "site-exec",
                {
                    "name": site.unix_user,
                    "step": "wp-install",
                    "title": site.domain,
                    "url": f"http://{site.domain}",
                    "admin_user": "admin",
                    "admin_email": f"admin@{site.domain}",
                    "admin_password": secrets_["admin_password"],
                },
            )
        ]


WP_SALT_NAMES = (
    "AUTH_KEY",
    "SECURE_AUTH_KEY",
    "LOGGED_IN_KEY",
    "NONCE_KEY",
    "AUTH_SALT",
    "SECURE_AUTH_SALT",
    "LOGGED_IN_SALT",
    "NONCE_SALT",
)


def generated_secrets(type_name: str) -> str:
    """The per-site secret kept (encrypted) in Site.app_key: fixed for the site's life, so a
    redeploy never logs users out."""
    if type_name == "laravel":
        return "base64:" + b64encode(secrets.token_bytes(32)).decode()
    if type_name == "wordpress":
        salts = {name: secrets.token_urlsafe(48) for name in WP_SALT_NAMES}
        return json.dumps({"salts": salts, "admin_password": secrets.token_urlsafe(18)})
    return ""


@register("sites")
def wordpress_archive_check(app_configs=None, **kwargs) -> list[Error]:
    """The WordPress archive override is both settings or neither: an archive without its
    SHA-256 would never be installed (CHOM installs no unverified archive)."""
    url, sha256 = settings.WORDPRESS_ARCHIVE_URL, settings.WORDPRESS_ARCHIVE_SHA256
    if not url and not sha256:
        return []
    if not url or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return [
            Error(
                "WORDPRESS_ARCHIVE_URL and WORDPRESS_ARCHIVE_SHA256 must be set together, the "
                "SHA-256 as 64 lowercase hex digits.",
                hint="Unset both to install WordPress from the VPS's own `wordpress` package.",
                id="sites.E001",
            )
        ]
    if not url.startswith(("http://", "https://")):
        return [Error("WORDPRESS_ARCHIVE_URL must be an http(s):// URL.", id="sites.E002")]
    return []


SITE_TYPES: dict[str, SiteType] = {t.name: t() for t in (StaticSite, PhpSite, LaravelSite, WordPressSite)}


def site_type(name: str) -> SiteType:
    return SITE_TYPES[name]
