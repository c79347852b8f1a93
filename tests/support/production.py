"""Read a setting as chom.settings.production computes it, in a fresh interpreter with only the
environment a production start needs (the test process runs on the test settings)."""

import subprocess
import sys

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "chom.settings.production",
    "SECRET_KEY": "x" * 60,
    "DATABASE_URL": "sqlite:////tmp/unused.sqlite3",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "ALLOWED_HOSTS": "chom.test",
    "FIELD_ENCRYPTION_KEY": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
    "PATH": "/usr/bin:/bin",
}


def production_setting(name: str, **env: str) -> str:
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    result = subprocess.run(
        [sys.executable, "-c", code], env=PRODUCTION_ENV | env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
