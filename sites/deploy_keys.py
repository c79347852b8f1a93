"""Writes of a site's deploy key and pinned git host key (the key material: sites/git_ssh.py)."""

from django.db import transaction
from django.utils import timezone

from chom.services import audit_record
from sites.git_ssh import deploy_key_generate, git_host_key_pin_fields, key_fingerprint
from sites.models import Site
from sites.services import site_require_live


def site_deploy_key_create(*, site: Site, actor=None, source_ip=None) -> Site:
    """Create SITE's deploy key, or rotate it: the new key replaces the old one on the VPS at the
    next deploy, so the old key stops working there at once (remove it from the git host too).
    The private half is stored encrypted and never leaves CHOM except towards the VPS."""
    site_require_live(site=site, allow_suspended=True)
    private, public = deploy_key_generate(comment=f"chom-{site.domain}")
    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        rotated = bool(locked.deploy_key_public)
        locked.deploy_key_private, locked.deploy_key_public = private, public
        locked.deploy_key_created_at = timezone.now()
        locked.save(update_fields=["deploy_key_private", "deploy_key_public", "deploy_key_created_at"])
        audit_record(
            action="site.deploy_key_rotated" if rotated else "site.deploy_key_created",
            actor=actor,
            tenant=site.tenant,
            target=f"site:{site.domain}",
            source_ip=source_ip,
            data={"fingerprint": key_fingerprint(public)},
        )
    return locked


def site_git_host_key_pin(*, site: Site, lines: list) -> bool:
    """Pin the git host key a successful SSH clone accepted (trust on first use). A site pinned
    already keeps its pin: only a repository on another host clears it (site_update). True when
    a key was pinned now."""
    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        fields = git_host_key_pin_fields(locked, lines)
        if not fields:
            return False
        Site.objects.filter(pk=site.pk).update(**fields)
        audit_record(
            action="site.git_host_key_pinned",
            tenant=site.tenant,
            target=f"site:{site.domain}",
            data={"fingerprint": fields["git_host_key_fingerprint"]},
        )
    for name, value in fields.items():
        setattr(site, name, value)
    return True


def site_git_host_key_clear(*, site: Site, actor=None, source_ip=None) -> Site:
    """Forget SITE's pinned git host key, for a git server that really changed its key (a
    reinstall, a rotation): the next deploy pins the key the server shows then (trust on first
    use again). Clearing nothing pinned changes nothing and records nothing."""
    site_require_live(site=site, allow_suspended=True)
    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        previous = locked.git_host_key_fingerprint
        if locked.git_host_key or previous:
            Site.objects.filter(pk=site.pk).update(git_host_key="", git_host_key_fingerprint="")
            audit_record(
                action="site.git_host_key_cleared",
                actor=actor,
                tenant=site.tenant,
                target=f"site:{site.domain}",
                source_ip=source_ip,
                data={"fingerprint": previous},
            )
    site.git_host_key, site.git_host_key_fingerprint = "", ""
    return site
