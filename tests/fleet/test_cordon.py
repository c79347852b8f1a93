"""A cordoned VPS takes no new sites: allocation skips it and the shared capacity leaves it out, so
auto-grow sees the headroom new sites can really use. Its own sites stay."""

from chom.models import AuditEvent
from fleet import selectors, services
from fleet.models import ProviderCredential, Vps
from sites.models import Site


def _vps(name, max_sites, **extra):
    return Vps.objects.create(name=name, provider="manual", max_sites=max_sites, status="active", **extra)


def _sites(vps, tenant, n):
    for i in range(n):
        Site.objects.create(
            tenant=tenant, vps=vps, domain=f"{vps.name}-{i}.example", type="static", status="active"
        )


def test_it_places_no_new_site_on_a_cordoned_vps(alice):
    roomy, busy = _vps("roomy", 50), _vps("busy", 10)
    _sites(busy, alice.tenant, 5)
    services.vps_cordon(vps=roomy, cordoned=True)
    assert selectors.vps_allocate(tenant=alice.tenant) == busy
    services.vps_cordon(vps=busy, cordoned=True)
    assert selectors.vps_allocate(tenant=alice.tenant) is None


def test_it_leaves_a_cordoned_vps_out_of_the_shared_capacity(alice):
    open_, cordoned = _vps("open", 10), _vps("drained", 50, cordoned=True)
    _sites(open_, alice.tenant, 8)
    _sites(cordoned, alice.tenant, 2)
    capacity = selectors.shared_fleet_capacity()
    assert (capacity.used, capacity.total) == (8, 10)


def test_it_grows_the_fleet_when_only_cordoned_servers_have_room(alice):
    ProviderCredential.objects.create(provider="digitalocean", token="t", is_default=True)
    open_ = _vps("open", 10)
    _vps("drained", 100, cordoned=True)
    _sites(open_, alice.tenant, 8)
    assert services.fleet_capacity_check() == 0.8
    grown = Vps.objects.get(provider="digitalocean")
    assert (grown.kind, grown.status) == ("shared", "pending")


def test_it_keeps_the_sites_of_a_cordoned_vps_and_records_who_cordoned_it(alice, staff):
    vps = _vps("web-1", 10)
    _sites(vps, alice.tenant, 3)
    services.vps_cordon(vps=vps, cordoned=True, actor=staff.user)
    services.vps_cordon(vps=vps, cordoned=True, actor=staff.user)  # already: nothing to record
    assert selectors.vps_site_count(vps) == 3
    events = AuditEvent.objects.filter(action="vps.cordoned")
    assert [(e.actor, e.target) for e in events] == [(staff.user, "vps:web-1")]


def test_it_shows_cordoned_in_the_api(staff):
    vps = _vps("web-1", 10, cordoned=True)
    body = staff.client().get(f"/api/v1/vps/{vps.pk}").json()
    assert body["cordoned"] is True
    staff.client().patch(f"/api/v1/vps/{vps.pk}", {"cordoned": False}, format="json")
    vps.refresh_from_db()
    assert vps.cordoned  # read-only in the API
