from fleet.models import Vps
from sites.models import Site


def make_vps(name: str = "web1", **fields) -> Vps:
    defaults = {"provider": "manual", "ip_address": "192.0.2.10", "status": Vps.Status.ACTIVE}
    return Vps.objects.create(name=name, **(defaults | fields))


def make_site(tenant, vps: Vps, domain: str) -> Site:
    site = Site.objects.create(tenant=tenant, vps=vps, domain=domain, type=Site.Type.STATIC, status="active")
    site.unix_user = f"site{site.pk}"
    site.save(update_fields=["unix_user"])
    return site
