"""Production: every value comes from the environment; missing essentials stop the start-up."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import FIELD_ENCRYPTION_KEYS, SECRET_KEY, env

_REQUIRED = ["SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "FIELD_ENCRYPTION_KEY"]
_missing = [n for n in _REQUIRED if not (env.str(n, default="") or env.str(f"{n}_FILE", default=""))]
if _missing:
    raise ImproperlyConfigured(f"production settings need these environment variables: {_missing}")
if len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters")
if not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY must name at least one Fernet key")

DEBUG = False
CHOM_LOCAL_PROVIDER = False  # test VPSes on the control plane itself: never in production
LOCAL_DNS_MANAGEMENT_URL = ""  # the demo's DNS test server: never in production
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# /metrics: METRICS_TOKEN (or a staff session); an IP allow-list only when set explicitly, and it
# applies to the real client (TRUSTED_PROXIES), never to the nginx in front.
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])
STAFF_REQUIRE_2FA = True  # staff sign in with a second factor, always
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
