"""Cloud provisioning end to end: `POST /api/v1/vps` with provider digitalocean, linode and vultr
against local fakes of their documented APIs (devstack/clouds.py) whose "create" boots a real
local VPS with the SSH key CHOM registered. The real provider clients, the real `vps.create`
operation (image, region and size chosen, server awaited, host key pinned, bootstrap), a real
server at the end. A request the real API would refuse fails with the provider's own message."""

import pytest

from chom.models import Operation
from chom.operations import operation_execute
from devstack.clouds import FAKES, LocalMachines
from fleet.models import ProviderCredential, Vps
from fleet.remote.agent_client import Agent
from fleet.services import fleet_grow_if_configured, transport_for
from tests.support.fleet import vps_name

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(request, local_fleet, fleet_network):
    """A fake of the named cloud, on the fleet bridge's gateway, with real machines behind it."""
    network, base, subnet = fleet_network
    machines = LocalMachines(
        base_dir=str(base / f"cloud-{request.param}"), bridge=network.name, subnet=subnet
    )
    with FAKES[request.param](machines=machines) as fake:
        ProviderCredential.objects.create(provider=fake.provider_name, token=fake.token, base_url=fake.url)
        yield fake


def _create(staff, **body) -> tuple[Vps, Operation]:
    response = staff.client().post("/api/v1/vps", body, format="json")
    assert response.status_code == 202, response.content
    operation_execute(operation_id=response.json()["operation"]["id"])
    op = Operation.objects.get(id=response.json()["operation"]["id"])
    return Vps.objects.get(pk=response.json()["id"]), op


def _log(op: Operation) -> str:
    return "\n".join(e.message for e in op.log_entries.all())


@pytest.mark.parametrize("cloud", sorted(FAKES), indirect=True)
def test_it_creates_an_active_bootstrapped_vps_through_each_cloud_api(staff, cloud):
    vps, op = _create(staff, name=vps_name(f"cloud-{cloud.provider_name[:5]}"), provider=cloud.provider_name)
    assert op.status == "succeeded", f"{op.error}\n{_log(op)}"
    vps.refresh_from_db()
    assert vps.status == Vps.Status.ACTIVE and vps.host_key and vps.provider_id
    # The cloud got a valid request: its default region, size and Debian 12 image, CHOM's key.
    created = cloud.assert_requested("POST", cloud.create_path).body
    provider = type(cloud).provider_name
    assert (vps.region, vps.size) != ("", "")
    assert created.get("image", str(created.get("os_id", ""))) in cloud.images
    assert f"asking {provider}" in _log(op)
    # And the server it reported is the one CHOM bootstrapped: its agent answers.
    with transport_for(vps) as transport:
        facts = Agent(transport).call("facts").data
    assert facts["os"]["id"] == "debian"


@pytest.mark.parametrize(
    ("cloud", "body", "message"),
    [
        ("digitalocean", {"region": "mars1"}, "Region is not available"),
        ("linode", {"size": "g6-imaginary-64"}, "type: A valid plan type by that ID was not found"),
        ("vultr", {"region": "atlantis"}, "Invalid region."),
    ],
    indirect=["cloud"],
)
def test_it_fails_with_the_providers_own_message_when_the_api_refuses(staff, cloud, body, message):
    vps, op = _create(staff, name=vps_name("cloud-refused"), provider=cloud.provider_name, **body)
    assert op.status == "failed"
    assert message in op.error, op.error
    vps.refresh_from_db()
    assert vps.status == Vps.Status.FAILED and message in vps.status_reason
    assert not cloud.servers  # nothing was created, so nothing is billed


@pytest.mark.parametrize("cloud", ["digitalocean"], indirect=True)
def test_it_grows_the_fleet_through_the_default_cloud_account(staff, cloud):
    ProviderCredential.objects.filter(provider=cloud.provider_name).update(is_default=True)
    vps = fleet_grow_if_configured()
    assert vps is not None and vps.provider == cloud.provider_name
    assert fleet_grow_if_configured() is None  # one server on its way at a time
    op = Operation.objects.get(target_id=str(vps.pk), kind="vps.create")
    operation_execute(operation_id=op.id)
    vps.refresh_from_db()
    assert vps.status == Vps.Status.ACTIVE, _log(Operation.objects.get(id=op.id))
    assert vps.kind == Vps.Kind.SHARED and vps.provider_id in {s.id for s in cloud.servers.values()}


@pytest.mark.parametrize("cloud", ["vultr"], indirect=True)
def test_it_builds_an_enterprise_tenants_dedicated_server_with_its_first_site(db, cloud):
    """POST /api/v1/sites answers 202 at once; the site's operation builds the server first."""
    from chom.services import tenant_create
    from sites.models import Site
    from tests.conftest import Persona
    from tests.e2e.test_sites import _get

    ProviderCredential.objects.filter(provider=cloud.provider_name).update(is_default=True)
    tenant, issued = tenant_create(slug="initech", tier="enterprise", owner_email="peter@initech.test")
    owner = Persona(issued.token.user, tenant, issued.plaintext)
    response = owner.client().post("/api/v1/sites", {"domain": "tps.test", "type": "php"}, format="json")
    assert response.status_code == 202, response.content
    site = Site.objects.get(pk=response.json()["id"])
    assert (site.vps.kind, site.vps.tenant_id, site.vps.status) == ("dedicated", tenant.pk, "pending")
    assert not cloud.servers  # nothing built yet: the request did not wait for a cloud
    op = Operation.objects.get(id=response.json()["operation"]["id"])
    operation_execute(operation_id=op.id)
    op.refresh_from_db()
    assert op.status == "succeeded", f"{op.error}\n{_log(op)}"
    assert "building dedicated server" in _log(op)
    site.vps.refresh_from_db()
    assert site.vps.status == Vps.Status.ACTIVE and site.vps.provider == "vultr"
    assert _get(site.vps, "tps.test").headers.get("X-Chom-Site") == site.unix_user
    # The next site goes onto the same dedicated server, no second build.
    response = owner.client().post("/api/v1/sites", {"domain": "tps2.test", "type": "static"}, format="json")
    assert Site.objects.get(pk=response.json()["id"]).vps_id == site.vps_id and len(cloud.servers) == 1
