"""Local/demo settings: `make run`. Safe embedded defaults, never used in production."""

import secrets
from pathlib import Path

from .base import *  # noqa: F403
from .base import FIELD_ENCRYPTION_KEYS, STATIC_ROOT, VAR_DIR, env, env_secret

DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
WHITENOISE_USE_FINDERS = True


def _persisted_secret(name: str, make) -> str:
    """A per-checkout secret kept under var/, so restarts keep sessions and encrypted fields."""
    path = VAR_DIR / name
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_secret("SECRET_KEY", default="") or _persisted_secret(
    "secret-key", lambda: secrets.token_urlsafe(50)
)
if not FIELD_ENCRYPTION_KEYS:
    from cryptography.fernet import Fernet

    FIELD_ENCRYPTION_KEYS = [
        _persisted_secret("field-encryption.key", lambda: Fernet.generate_key().decode())
    ]

# WhiteNoise warns when STATIC_ROOT is missing; collectstatic is a production-only step.
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
