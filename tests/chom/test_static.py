"""Vendored front-end files: the bytes we reviewed, served by our own static files (no CDN)."""

import hashlib
from pathlib import Path

from django.conf import settings

VENDOR = Path(settings.BASE_DIR) / "chom" / "static" / "chom" / "vendor"


HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"


def test_it_vendors_the_reviewed_htmx():
    data = (VENDOR / "htmx-2.0.11.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == HTMX_SHA256


def test_it_loads_htmx_from_our_static_files_on_every_dashboard_page(admin_client):
    page = admin_client.get("/").content.decode()
    assert "/static/chom/vendor/htmx-2.0.11.min.js" in page
    assert "unpkg.com" not in page and "cdn" not in page.lower()
