"""Test settings: the suite runs on DATABASE_URL/REDIS_URL when set (CI: PostgreSQL + Redis)."""

import os
import uuid
from pathlib import Path

from .base import *  # noqa: F403
from .base import CACHES, DATABASES, STATIC_ROOT, VAR_DIR

SECRET_KEY = "test-secret-key-not-for-production"  # noqa: S105
FIELD_ENCRYPTION_KEYS = ["7Mlf4o0a3jdjZ2-6xqq5cC2m2S0lyq6R9kKo1QqjDHk="]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that real worker subprocesses share the test database.
    # Per process, so that two test runs on one machine never share (and lock) one file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}

# WhiteNoise warns when STATIC_ROOT is missing; collectstatic is a production-only step.
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)

# A fresh cache namespace per run: rate-limit counters of earlier runs never leak in.
CACHES["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex[:12]}"

# No test reaches a real DNS provider: tests that need one start a local fake and point here.
DNS_PROVIDER_API_URLS = {
    "digitalocean": "http://127.0.0.1:9/v2",
    "cloudflare": "http://127.0.0.1:9/client/v4",
}
DNS_PROVIDER_TIMEOUT_SECONDS = 2.0
