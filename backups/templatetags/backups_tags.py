from django import template

from backups.models import Backup
from chom.models import Operation

register = template.Library()


@register.inclusion_tag("backups/_site_backups.html", takes_context=True)
def site_backups(context, site):
    """The site page's backups panel: latest backups, restore/verify buttons, their operations."""
    backups = list(Backup.objects.filter(site=site)[:20])
    operations = Operation.objects.filter(kind__startswith="backup.").filter(
        target_type="sites.site", target_id=str(site.pk)
    ) | Operation.objects.filter(
        kind="backup.verify", target_type="backups.backup", target_id__in=[str(b.pk) for b in backups]
    )
    return {
        "site": site,
        "backups": backups,
        "operations": operations.order_by("-created_at")[:20],
        "csrf_token": context.get("csrf_token"),
    }
