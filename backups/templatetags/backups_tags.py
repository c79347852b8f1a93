from django import template

from backups import selectors

register = template.Library()


@register.inclusion_tag("backups/_site_backups.html", takes_context=True)
def site_backups(context, site):
    """The site page's backups panel: latest backups, restore/verify buttons, their operations."""
    backups = list(selectors.site_backups(site=site)[:20])
    return {
        "site": site,
        "backups": backups,
        "operations": selectors.site_backup_operations(site=site, backups=backups)[:20],
        "csrf_token": context.get("csrf_token"),
    }
