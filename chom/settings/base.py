"""Settings shared by every environment. Everything that differs comes from the environment.

With no DATABASE_URL CHOM uses SQLite under var/; with no REDIS_URL / CELERY_BROKER_URL it uses
kombu's filesystem transport under var/broker, so background work still runs in a separate
worker process on a machine that has nothing else installed.
"""

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(environ.Env().str("CHOM_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()


def env_secret(name: str, default: str | None = None) -> str | None:
    """Read NAME, or the contents of the file named by NAME_FILE (Docker/systemd secrets)."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        return Path(path).read_text().strip()
    return env.str(name, default=default)


SECRET_KEY = env_secret("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")
CHOM_VERSION = "0.1.0"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "chom",
    "fleet",
    "sites",
    "backups",
    "billing",
    "observability",
]

MIDDLEWARE = [
    "chom.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "chom.two_factor.StaffTwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chom.middleware.ApplicationErrorMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout answer
]

# Brute-force protection of /login/ and /admin/login/ (django-axes): after AXES_FAILURE_LIMIT
# failures for one user name from one client address, that pair is locked out for
# AXES_COOLOFF_MINUTES; a success resets the count. Lockouts are audited (chom.two_factor).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_MINUTES = env.float("AXES_COOLOFF_MINUTES", default=15)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "chom.http.client_ip"  # honours TRUSTED_PROXIES
AXES_LOCKOUT_TEMPLATE = "chom/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
# Staff must sign in with a second factor (TOTP, with one-time recovery codes). Always on in
# production settings; elsewhere off unless set, but a staff user who enrolled is always asked.
STAFF_REQUIRE_2FA = env.bool("STAFF_REQUIRE_2FA", default=False)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="CHOM")

ROOT_URLCONF = "chom.urls"
WSGI_APPLICATION = "chom.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'chom.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat are separate processes sharing one file: wait instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker and cache ------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        # Seconds between looks at the queue folder: latency of the embedded worker.
        "polling_interval": 0.1,
    }
else:
    # Redis re-delivers an unacked (acks_late) task after this; longer than any hard limit.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 4 * 3600}

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "chom_cache",
        }
    }
    SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- Celery (chom/celery.py reads every CELERY_* setting) -------------------------------------
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Tenants' notification deliveries have a queue and a worker of their own (deploy/README.md): a
# tenant's hung receivers never hold the workers that deploy.
CELERY_TASK_ROUTES = {
    "observability.send_channel_deliveries": {"queue": "notify"},
    "observability.deliver_notifications": {"queue": "notify"},
}
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Security / crypto ------------------------------------------------------------------------
# Fernet keys (urlsafe base64, 32 bytes); the first encrypts, all decrypt (rotation).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEY", default=[])
if env.str("FIELD_ENCRYPTION_KEY_FILE", default=""):
    FIELD_ENCRYPTION_KEYS = [env_secret("FIELD_ENCRYPTION_KEY")]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- I18N / static ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "static"))
STATICFILES_DIRS = [BASE_DIR / "chom" / "static"]

# --- API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["chom.api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["chom.api.permissions.ApiAccess"],
    "DEFAULT_THROTTLE_CLASSES": ["chom.api.throttling.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "chom.api.pagination.Pagination",
    "EXCEPTION_HANDLER": "chom.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CHOM API",
    "DESCRIPTION": "Hosting control plane. Long actions answer 202 with an Operation to poll.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own static files: the docs page works without internet access.
    "ENUM_NAME_OVERRIDES": {
        "OperationStatusEnum": "chom.models.Operation.Status",
        "VpsStatusEnum": "fleet.models.Vps.Status",
        "SiteStatusEnum": "sites.models.Site.Status",
        "SiteTypeEnum": "sites.models.Site.Type",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "chom.api.schema.add_error_responses",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Observability of CHOM itself ---------------------------------------------------------------
# Proxies whose X-Forwarded-For is believed (CIDRs), e.g. the nginx in front of gunicorn:
# "127.0.0.1/32,::1/128". Empty: the TCP peer is the client.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
# Clients (the real client, after TRUSTED_PROXIES) that may read /metrics without METRICS_TOKEN.
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
METRICS_TOKEN = env_secret("METRICS_TOKEN", default="")
WORKER_HEARTBEAT_SECONDS = 10
WORKER_STALE_SECONDS = env.int("WORKER_STALE_SECONDS", default=60)
OPERATION_STALE_GRACE_SECONDS = env.int("OPERATION_STALE_GRACE_SECONDS", default=60)
OPERATION_LOST_MESSAGE_SECONDS = env.int("OPERATION_LOST_MESSAGE_SECONDS", default=900)
HEALTH_CHECK_TIMEOUT = 2.0

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="chom@localhost")
ADMINS = [("CHOM admins", a) for a in env.list("ADMIN_EMAILS", default=[])]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Fleet ------------------------------------------------------------------------------------
# The `local` provider boots throw-away VPSes on this machine (make demo, e2e tests). Never in production.
CHOM_LOCAL_PROVIDER = env.bool("CHOM_LOCAL_PROVIDER", default=False)
LOCAL_FLEET_DIR = env.str("LOCAL_FLEET_DIR", default=str(VAR_DIR / "fleet"))
LOCAL_FLEET_BRIDGE = env.str("LOCAL_FLEET_BRIDGE", default="chomlocal")
LOCAL_FLEET_SUBNET = env.str("LOCAL_FLEET_SUBNET", default="10.251.1")
# Internal networks sites may clone from (on-premise git, the test fleet's bridge). Never opens
# link-local addresses or CHOM's own services (sites/repositories.py).
REPOSITORY_ALLOWED_NETWORKS = env.list("REPOSITORY_ALLOWED_NETWORKS", default=[])
# Address (or CIDR) of the monitoring server allowed to reach exporter ports through UFW.
FLEET_MONITORING_SOURCE = env.str("FLEET_MONITORING_SOURCE", default="")
FLEET_UNREACHABLE_AFTER = env.int("FLEET_UNREACHABLE_AFTER", default=2)
FLEET_HEALTH_CONCURRENCY = env.int("FLEET_HEALTH_CONCURRENCY", default=8)
FLEET_CAPACITY_ALERT_RATIO = env.float("FLEET_CAPACITY_ALERT_RATIO", default=0.7)
# Servers being built at once (on-demand dedicated VPSes, auto-grow): per tenant and overall.
FLEET_MAX_BUILDING_PER_TENANT = env.int("FLEET_MAX_BUILDING_PER_TENANT", default=1)
FLEET_MAX_BUILDING = env.int("FLEET_MAX_BUILDING", default=5)
FLEET_SSH_CONNECT_TIMEOUT = env.float("FLEET_SSH_CONNECT_TIMEOUT", default=10.0)
FLEET_SSH_COMMAND_TIMEOUT = env.float("FLEET_SSH_COMMAND_TIMEOUT", default=120.0)

# --- Billing (Stripe) ---------------------------------------------------------------------------
# Billing is on when STRIPE_SECRET_KEY is set; billing/checks.py then refuses a half configuration.
STRIPE_SECRET_KEY = env_secret("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env_secret("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_WEBHOOK_TOLERANCE = env.int("STRIPE_WEBHOOK_TOLERANCE", default=300)
# Empty = api.stripe.com; tests and staging point it at a local fake.
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
STRIPE_TIMEOUT = env.float("STRIPE_TIMEOUT", default=10.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
STRIPE_PRICE_STARTER = env.str("STRIPE_PRICE_STARTER", default="")
STRIPE_PRICE_PRO = env.str("STRIPE_PRICE_PRO", default="")
STRIPE_PRICE_ENTERPRISE = env.str("STRIPE_PRICE_ENTERPRISE", default="")
# Meter event names are "<STRIPE_METER_EVENT_NAME>_<metric>" (e.g. chom_usage_sites); empty = no metering.
STRIPE_METER_EVENT_NAME = env.str("STRIPE_METER_EVENT_NAME", default="chom_usage")
BILLING_METERED_METRICS = env.list("BILLING_METERED_METRICS", default=["sites", "backup_storage_gb"])
BILLING_GRACE_DAYS = env.int("BILLING_GRACE_DAYS", default=7)
# Where Stripe Checkout and the Customer Portal send the customer back to.
BILLING_RETURN_URL = env.str("BILLING_RETURN_URL", default=SITE_URL)

# --- Sites ------------------------------------------------------------------------------------
# ACME directory for certificates: Let's Encrypt in production, the local pebble CA in make demo.
ACME_DIRECTORY_URL = env.str("ACME_DIRECTORY_URL", default="https://acme-v02.api.letsencrypt.org/directory")
ACME_EMAIL = env.str("ACME_EMAIL", default="")
# PEM of a CA to trust for the ACME server (pebble's listener CA); empty for a public CA.
ACME_CA_BUNDLE_FILE = env.str("ACME_CA_BUNDLE_FILE", default="")
# make demo / e2e only: pebble-challtestsrv's management API, told where each site's domains live.
LOCAL_DNS_MANAGEMENT_URL = env.str("LOCAL_DNS_MANAGEMENT_URL", default="")
SSL_RENEW_BEFORE_DAYS = env.int("SSL_RENEW_BEFORE_DAYS", default=30)
# Automatic TLS: the DNS servers ("host:port") CHOM asks whether a site's names point at its VPS
# before it requests the certificate; empty = this machine's resolver. make demo: challtestsrv.
TLS_DNS_RESOLVERS = env.list("TLS_DNS_RESOLVERS", default=[])
TLS_DNS_TIMEOUT_SECONDS = env.float("TLS_DNS_TIMEOUT_SECONDS", default=3.0)
# DNS-01 (wildcard names): the DNS providers' APIs (tests and make demo: local fakes), and how
# long CHOM waits for a challenge TXT record to be visible through TLS_DNS_RESOLVERS.
DNS_PROVIDER_API_URLS = {
    "digitalocean": env.str("DNS_DIGITALOCEAN_API_URL", default=""),
    "cloudflare": env.str("DNS_CLOUDFLARE_API_URL", default=""),
}
DNS_PROVIDER_TIMEOUT_SECONDS = env.float("DNS_PROVIDER_TIMEOUT_SECONDS", default=10.0)
ACME_DNS_PROPAGATION_SECONDS = env.float("ACME_DNS_PROPAGATION_SECONDS", default=180.0)
# DNS-01: CHOM is the ACME client (the DNS token never reaches a VPS); its account key (PEM,
# created on first use, 0600). Every worker that runs site.ssl must see the same file.
ACME_ACCOUNT_KEY_FILE = env.str("ACME_ACCOUNT_KEY_FILE", default=str(VAR_DIR / "acme-account-key.pem"))
# WordPress comes from each VPS's own `wordpress` distribution package (apt verifies its
# signature; the agent copies it into the release) unless these two are set: an archive (a
# mirror, or a pinned upstream release) and its SHA-256, checked before anything is extracted.
# Both or neither (sites.E001 stops the start otherwise: CHOM never installs an unverified archive).
WORDPRESS_ARCHIVE_URL = env.str("WORDPRESS_ARCHIVE_URL", default="")
WORDPRESS_ARCHIVE_SHA256 = env.str("WORDPRESS_ARCHIVE_SHA256", default="")
SITE_RELEASES_KEPT = 5
# Accounts on each VPS that may read every site's logs (POSIX ACL on /var/log/chom/SITE), e.g. the
# metrics reader; never a site user. Each must exist on the VPS.
SITE_LOG_READERS = env.list("SITE_LOG_READERS", default=[])
SITE_VERIFY_TIMEOUT = env.float("SITE_VERIFY_TIMEOUT", default=10.0)
# Release archives tenants upload (POST /api/v1/sites/{id}/releases): streamed into this root-only
# directory, inspected, kept until the deploy that ships them is over. Size: the tier's
# upload_max_mb. An archive with more entries, or expanding to more than this many times the tier's
# upload limit, is refused before anything reaches a server (zip and gzip bombs).
UPLOADS_DIR = env.str("UPLOADS_DIR", default=str(VAR_DIR / "uploads"))
UPLOAD_MAX_ENTRIES = 20000
UPLOAD_MAX_EXPANSION = 4

# --- Observability: Prometheus, Loki, Grafana, Alertmanager --------------------------------------
# Each integration is on when its URL is set; CHOM's API answers 503 "not configured" otherwise.
PROMETHEUS_URL = env.str("PROMETHEUS_URL", default="")
LOKI_URL = env.str("LOKI_URL", default="")
# Promtail on each VPS pushes to CHOM, never to Loki: CHOM checks the VPS's own bearer token and
# forwards into that VPS's Loki tenant (observability/log_shipping.py). LOKI_PUSH_URL is the base
# of CHOM's push endpoint as the fleet reaches it (Promtail appends /loki/api/v1/push); empty =
# SITE_URL + "/observability". Log shipping is on when LOKI_URL is set.
LOKI_PUSH_URL = env.str("LOKI_PUSH_URL", default="")
# A push CHOM forwards: body cap (Promtail's batches are ~1 MiB) and the wait for Loki's answer.
LOKI_PUSH_MAX_BYTES = 8 * 1024 * 1024
LOKI_PUSH_TIMEOUT = 5.0
GRAFANA_URL = env.str("GRAFANA_URL", default="")
GRAFANA_TOKEN = env_secret("GRAFANA_TOKEN", default="")
# Alertmanager's API (v2): the dashboard lists, creates and expires silences there.
ALERTMANAGER_URL = env.str("ALERTMANAGER_URL", default="")
# Bearer tokens Prometheus (http_sd) and Alertmanager (webhook) present to CHOM; empty = refused.
PROMETHEUS_SD_TOKEN = env_secret("PROMETHEUS_SD_TOKEN", default="")
ALERTMANAGER_WEBHOOK_TOKEN = env_secret("ALERTMANAGER_WEBHOOK_TOKEN", default="")
# file_sd for setups that prefer files: the beat job rewrites this file when the fleet changes.
PROMETHEUS_FILE_SD_PATH = env.str("PROMETHEUS_FILE_SD_PATH", default="")
# Slack-compatible incoming webhooks ({"text": ...}) and addresses told about every alert.
ALERT_WEBHOOK_URLS = env.list("ALERT_WEBHOOK_URLS", default=[])
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
OBSERVABILITY_QUERY_TIMEOUT = env.float("OBSERVABILITY_QUERY_TIMEOUT", default=10.0)
OBSERVABILITY_NOTIFY_TIMEOUT = env.float("OBSERVABILITY_NOTIFY_TIMEOUT", default=10.0)
# Tenants' notification receivers (observability/notifications.py): a batch of sends waits at most
# connect + read + 1 s in all, so receivers that accept and never answer cost seconds.
OBSERVABILITY_NOTIFY_CONNECT_TIMEOUT = env.float("OBSERVABILITY_NOTIFY_CONNECT_TIMEOUT", default=3.0)
OBSERVABILITY_NOTIFY_READ_TIMEOUT = env.float("OBSERVABILITY_NOTIFY_READ_TIMEOUT", default=5.0)
# Promtail reads this config; the binary itself comes from Grafana's packages (not Debian's).
PROMTAIL_BINARY = env.str("PROMTAIL_BINARY", default="/usr/bin/promtail")

# --- Backups (S3) ---------------------------------------------------------------------------------
# Backups are on when S3_BUCKET is set (or BACKUPS_ENABLED); backups/checks.py refuses a half
# configuration. Any S3-compatible endpoint: AWS (empty URL), R2, MinIO, Spaces, moto in make demo.
BACKUPS_ENABLED = env.bool("BACKUPS_ENABLED", default=False)
S3_ENDPOINT_URL = env.str("S3_ENDPOINT_URL", default="")
S3_BUCKET = env.str("S3_BUCKET", default="")
S3_REGION = env.str("S3_REGION", default="us-east-1")
S3_ACCESS_KEY_ID = env_secret("S3_ACCESS_KEY_ID", default="")
S3_SECRET_ACCESS_KEY = env_secret("S3_SECRET_ACCESS_KEY", default="")
S3_PATH_STYLE = env.bool("S3_PATH_STYLE", default=True)
S3_PREFIX = env.str("S3_PREFIX", default="chom/")
# Server-side encryption requested on every object: "AES256", "aws:kms", or empty to not ask.
S3_SSE = env.str("S3_SSE", default="AES256")
S3_CONNECT_TIMEOUT = env.float("S3_CONNECT_TIMEOUT", default=10.0)
S3_READ_TIMEOUT = env.float("S3_READ_TIMEOUT", default=60.0)
S3_MAX_ATTEMPTS = env.int("S3_MAX_ATTEMPTS", default=3)
BACKUP_PART_SIZE = env.int("BACKUP_PART_SIZE", default=8 * 1024 * 1024)
BACKUP_STREAM_TIMEOUT = env.float("BACKUP_STREAM_TIMEOUT", default=3 * 3600.0)
BACKUP_CONCURRENCY_PER_VPS = env.int("BACKUP_CONCURRENCY_PER_VPS", default=2)
# Daily backups start in this UTC window, each site at its own offset within it.
BACKUP_WINDOW_START_HOUR = env.int("BACKUP_WINDOW_START_HOUR", default=1)
BACKUP_WINDOW_HOURS = env.int("BACKUP_WINDOW_HOURS", default=5)
BACKUP_FILE_EXCLUDES = env.list(
    "BACKUP_FILE_EXCLUDES",
    default=["storage/framework/cache/data", "storage/framework/views", "wp-content/cache", ".cache"],
)
BACKUP_DOWNLOAD_URL_SECONDS = env.int("BACKUP_DOWNLOAD_URL_SECONDS", default=300)
CONTROL_PLANE_BACKUP_RETENTION_DAYS = env.int("CONTROL_PLANE_BACKUP_RETENTION_DAYS", default=14)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] |= {
    "AlertStatusEnum": "observability.models.Alert.Status",
    "AlertSeverityEnum": "observability.models.Alert.Severity",
}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "BackupStatusEnum": "backups.models.Backup.Status",
        "BackupKindEnum": "backups.models.Backup.Kind",
        "BackupTriggerEnum": "backups.models.Backup.Trigger",
        # Backup.Kind made VPS "kind" ambiguous: name both.
        "VpsKindEnum": "fleet.models.Vps.Kind",
        "NotificationChannelKindEnum": "observability.models.NotificationChannel.Kind",
        "TlsModeEnum": "sites.models.Site.TlsMode",
        "TlsStateEnum": "sites.models.Site.TlsState",
    }
)
