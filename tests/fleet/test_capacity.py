from chom.services import tenant_create
from fleet import selectors, services
from fleet.models import ProviderCredential, Vps
from observability.models import Alert
from sites.models import Site


def _vps(name, max_sites, kind="shared", status="active", tenant=None):
    return Vps.objects.create(
        name=name, provider="manual", max_sites=max_sites, kind=kind, status=status, tenant=tenant
    )


def _sites(vps, tenant, n):
    for i in range(n):
        Site.objects.create(
            tenant=tenant, vps=vps, domain=f"{vps.name}-{i}.example", type="static", status="active"
        )


def test_it_allocates_the_shared_vps_with_most_free_capacity(alice):
    a, b = _vps("a", 10), _vps("b", 10)
    _vps("down", 100, status="unreachable")
    _sites(a, alice.tenant, 2)
    _sites(b, alice.tenant, 5)
    assert selectors.vps_allocate(tenant=alice.tenant) == a


def test_it_skips_full_servers_and_returns_none_when_all_are_full(alice):
    full = _vps("full", 1)
    _sites(full, alice.tenant, 1)
    assert selectors.vps_allocate(tenant=alice.tenant) is None


def test_it_ignores_deleted_sites_when_counting(alice):
    vps = _vps("a", 1)
    Site.objects.create(tenant=alice.tenant, vps=vps, domain="gone.example", type="static", status="deleted")
    assert selectors.vps_allocate(tenant=alice.tenant) == vps


def test_it_puts_enterprise_tenants_on_their_dedicated_vps(db):
    tenant, _ = tenant_create(slug="bigco", tier="enterprise", owner_email="o@big.test")
    _vps("shared", 100)
    dedicated = _vps("bigco-1", 10, kind="dedicated", tenant=tenant)
    assert selectors.vps_allocate(tenant=tenant) == dedicated


def test_it_raises_a_capacity_alert_past_70_percent_and_resolves_it(alice):
    vps = _vps("a", 10)
    _sites(vps, alice.tenant, 7)
    assert services.fleet_capacity_check() == 0.7
    alert = Alert.objects.get(name="fleet_capacity")
    assert alert.status == "firing" and "70%" in alert.summary
    services.fleet_capacity_check()
    assert Alert.objects.filter(name="fleet_capacity").count() == 1
    vps.max_sites = 100
    vps.save()
    services.fleet_capacity_check()
    assert Alert.objects.get(name="fleet_capacity").status == "resolved"


def test_it_grows_the_fleet_once_when_a_default_provider_is_configured(
    alice, django_capture_on_commit_callbacks
):
    ProviderCredential.objects.create(
        provider="digitalocean", token="t" * 40, default_region="fra1", is_default=True
    )
    vps = _vps("a", 10)
    _sites(vps, alice.tenant, 9)
    services.fleet_capacity_check()
    services.fleet_capacity_check()
    grown = Vps.objects.filter(provider="digitalocean")
    assert grown.count() == 1
    assert (grown[0].status, grown[0].region) == ("pending", "fra1")
