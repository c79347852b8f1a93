"""What the staff site detail shows of a site's app delivery (templates/sites/_delivery.html):
its deploy key, the pinned git host key, the environment's variable names, the deploy hooks and
whether a push webhook exists. A read that never loads a secret: not a variable's value, not the
deploy key's private half, not the webhook's secret."""

import binascii
import json

from sites.git_ssh import key_fingerprint
from sites.models import Site, SiteVariable, SiteWebhook


def argv_display(argv) -> str:
    """A hook's argv as a JSON list with every non-ASCII and control character escaped: a tenant's
    newline, terminal escape or right-to-left override shows as what it is, never as layout."""
    if not argv:
        return ""
    items = argv if isinstance(argv, list) else [argv]
    return json.dumps([str(a) for a in items], ensure_ascii=True)


def _deploy_key(site: Site) -> dict | None:
    if not site.deploy_key_public:
        return None
    try:
        fingerprint = key_fingerprint(site.deploy_key_public)
    except (IndexError, ValueError, binascii.Error):
        fingerprint = "unreadable key"
    return {
        "public_key": site.deploy_key_public,
        "fingerprint": fingerprint,
        "created_at": site.deploy_key_created_at,
    }


def site_delivery_summary(*, site: Site) -> dict:
    return {
        "deploy_key": _deploy_key(site),
        "git_host_key_fingerprint": site.git_host_key_fingerprint,
        "variables": list(
            SiteVariable.objects.filter(site=site).order_by("name").values("name", "updated_at")
        ),
        "hooks": [
            ("Build", argv_display(site.build_command)),
            ("Release", argv_display(site.release_command)),
        ],
        "webhook": SiteWebhook.objects.filter(site=site).values("created_at", "rotated_at").first(),
    }
