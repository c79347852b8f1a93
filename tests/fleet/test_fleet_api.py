import pytest

from chom.models import Operation
from fleet.models import FleetKey, Vps
from sites.models import Site


def _post(persona, body):
    return persona.client().post("/api/v1/vps", body, format="json")


def test_it_accepts_a_manual_server_with_202_and_an_operation(staff):
    response = _post(
        staff, {"name": "web-1", "provider": "manual", "ip_address": "192.0.2.10", "max_sites": 20}
    )
    assert response.status_code == 202
    body = response.json()
    assert body["name"] == "web-1" and body["status"] == "pending" and body["max_sites"] == 20
    assert body["operation"]["url"] == f"/api/v1/operations/{body['operation']['id']}"
    assert response["Location"] == f"/api/v1/vps/{body['id']}"
    op = Operation.objects.get(id=body["operation"]["id"])
    assert (op.kind, op.target_id, op.status) == ("vps.create", str(body["id"]), "queued")


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": "Web_1", "provider": "manual", "ip_address": "192.0.2.1"}, "name"),
        ({"name": "web;rm -rf /", "provider": "manual", "ip_address": "192.0.2.1"}, "name"),
        ({"name": "-web", "provider": "manual", "ip_address": "192.0.2.1"}, "name"),
        ({"name": "w" * 64, "provider": "manual", "ip_address": "192.0.2.1"}, "name"),
        ({"name": "web", "provider": "manual", "ip_address": "999.1.1.1"}, "ip_address"),
        ({"name": "web", "provider": "manual", "ip_address": "$(id)"}, "ip_address"),
        ({"name": "web", "provider": "manual"}, "ip_address"),
        ({"name": "web", "provider": "manual", "ip_address": "192.0.2.1", "ssh_port": 0}, "ssh_port"),
        ({"name": "web", "provider": "manual", "ip_address": "192.0.2.1", "ssh_port": 70000}, "ssh_port"),
        ({"name": "web", "provider": "nope"}, "provider"),
        ({"name": "web", "provider": "manual", "ip_address": "192.0.2.1", "kind": "dedicated"}, "tenant"),
        ({"name": "web", "provider": "manual", "ip_address": "192.0.2.1", "labels": {"A B": 1}}, "labels"),
    ],
)
def test_it_rejects_bad_input_with_the_error_shape(staff, body, field):
    response = _post(staff, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_input"
    assert field in response.json()["error"]["fields"]
    assert not Vps.objects.exists()


def test_it_refuses_the_local_provider_unless_enabled(staff, settings):
    settings.CHOM_LOCAL_PROVIDER = False
    response = _post(staff, {"name": "demo1", "provider": "local"})
    assert response.status_code == 400
    assert "disabled" in response.json()["error"]["message"]


def test_it_answers_409_for_a_duplicate_name(staff):
    _post(staff, {"name": "web", "provider": "manual", "ip_address": "192.0.2.1"})
    response = _post(staff, {"name": "web", "provider": "manual", "ip_address": "192.0.2.2"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "name_taken"


def test_it_forbids_customer_tokens(alice):
    assert alice.client().get("/api/v1/vps").status_code == 403
    response = _post(alice, {"name": "web", "provider": "manual", "ip_address": "192.0.2.1"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_it_patches_capacity_and_labels(staff):
    vps = Vps.objects.create(name="web", provider="manual", ip_address="192.0.2.1")
    response = staff.client().patch(
        f"/api/v1/vps/{vps.id}", {"max_sites": 7, "labels": {"zone": "a"}}, format="json"
    )
    assert response.status_code == 200
    vps.refresh_from_db()
    assert (vps.max_sites, vps.labels) == (7, {"zone": "a"})
    assert staff.client().patch(f"/api/v1/vps/{vps.id}", {"max_sites": -1}, format="json").status_code == 400


def test_it_refuses_to_delete_a_vps_with_live_sites(staff, alice):
    vps = Vps.objects.create(name="web", provider="manual", ip_address="192.0.2.1", status="active")
    Site.objects.create(tenant=alice.tenant, vps=vps, domain="a.example", type="static", status="active")
    response = staff.client().delete(f"/api/v1/vps/{vps.id}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "vps_in_use"
    Site.objects.update(status="deleted")
    response = staff.client().delete(f"/api/v1/vps/{vps.id}")
    assert response.status_code == 202
    assert Operation.objects.get(id=response.json()["operation"]["id"]).kind == "vps.destroy"


def test_it_queues_a_bootstrap(staff):
    vps = Vps.objects.create(name="web", provider="manual", ip_address="192.0.2.1", status="active")
    response = staff.client().post(f"/api/v1/vps/{vps.id}/bootstrap")
    assert response.status_code == 202
    assert Operation.objects.get(id=response.json()["operation"]["id"]).kind == "vps.bootstrap"
    assert staff.client().post("/api/v1/vps/999999/bootstrap").status_code == 404


def test_it_shows_the_fleet_public_key_and_keeps_the_private_half_encrypted(staff):
    body = staff.client().get("/api/v1/fleet/key").json()
    assert body["public_key"].startswith("ssh-ed25519 ")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key FROM fleet_fleetkey")
        stored = cursor.fetchone()[0]
    assert "PRIVATE KEY" not in stored
    assert "PRIVATE KEY" in FleetKey.objects.get().private_key


def test_it_shows_the_fleet_and_a_vps_page_to_staff(admin_client):
    vps = Vps.objects.create(
        name="web",
        provider="manual",
        ip_address="192.0.2.1",
        status="active",
        facts={"services": {"nginx": "active"}, "memory": {"total_bytes": 2**30, "available_bytes": 2**29}},
    )
    listing = admin_client.get("/fleet/")
    assert listing.status_code == 200 and b"192.0.2.1" in listing.content
    detail = admin_client.get(f"/fleet/{vps.pk}/")
    assert detail.status_code == 200
    assert b"nginx: active" in detail.content
