"""The fleet's pages and their actions: staff forms that call the API's services (cloud accounts:
the admin's service) and go on to the operation they queued. Clouds are the local HTTP fakes; a
server brought by the operator is a real sshd on loopback."""

import re
import socket

import pytest
from django.core.cache import cache
from django.test import Client

from chom.models import AuditEvent, Operation
from chom.operations import OperationContext, operation_claim, operation_execute
from chom.services import tenant_create
from devstack.clouds import DigitalOceanFake, LinodeFake
from fleet import selectors, services
from fleet.forms import ADOPT_SALT
from fleet.models import ProviderCredential, Vps
from fleet.remote.commands import Command
from observability.models import Alert
from sites.models import Site
from tests.fleet.loopback_sshd import loopback_sshd

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def private_cache(settings):
    """Catalogues are cached: each test starts with an empty cache of its own."""
    backend = "django.core.cache.backends.locmem.LocMemCache"
    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": "fleet-dashboard"}}
    cache.clear()


@pytest.fixture
def do_fake():
    with DigitalOceanFake() as fake:
        yield fake


@pytest.fixture
def do_account(do_fake):
    token, url = do_fake.token, do_fake.url
    return services.provider_credential_save(provider="digitalocean", token=token, base_url=url)


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10
    )


def _operation(response, kind: str) -> Operation:
    op = Operation.objects.get(kind=kind)
    assert response.status_code == 302 and response["Location"] == f"/operations/{op.id}/"
    return op


def _shown(client, page: str) -> list[str]:
    return [str(m) for m in client.get(page).context["messages"]]


def _server(port: int, **extra) -> dict:
    """What the operator enters on "Bring your own server"."""
    return {
        "name": "own-1",
        "ip_address": "127.0.0.1",
        "ssh_port": port,
        "kind": "shared",
        "max_sites": 5,
    } | extra


def _errors(response) -> dict:
    return {name: " ".join(errors) for name, errors in response.context["form"].errors.items()}


# --- cloud accounts: list -------------------------------------------------------------------------


def test_it_lists_accounts_with_defaults_and_the_clouds_catalogue_but_never_the_token(
    admin_client, do_fake, do_account
):
    services.provider_credential_save(
        provider="digitalocean", base_url=do_fake.url, default_region="fra1", is_default=True
    )
    page = admin_client.get("/fleet/clouds/").content.decode()
    assert do_fake.token not in page
    assert "default for auto-grow" in page and "fra1" in page
    for label in [*do_fake.regions.values(), *do_fake.sizes.values(), *do_fake.images.values()]:
        assert label in page
    assert "Debian 12: <code>debian-12-x64</code>" in page
    assert "Ubuntu 24.04 LTS: <code>ubuntu-24-04-x64</code>" in page
    assert 'href="/fleet/clouds/linode/"' in page and 'href="/fleet/clouds/vultr/"' in page  # to add


def test_it_asks_the_cloud_for_its_catalogue_once_per_few_minutes(admin_client, do_fake, do_account):
    admin_client.get("/fleet/clouds/")
    admin_client.get("/fleet/clouds/")
    admin_client.get("/fleet/new")
    assert len(do_fake.requests_to("GET", "/regions")) == 1
    cache.clear()
    admin_client.get("/fleet/clouds/")
    assert len(do_fake.requests_to("GET", "/regions")) == 2


def test_it_says_why_the_catalogue_is_missing_when_the_cloud_fails(admin_client, do_fake, do_account):
    do_fake.fail_next(500, path="/regions", message="regions are on fire")
    response = admin_client.get("/fleet/clouds/")
    assert response.status_code == 200
    assert "Could not list the catalogue" in response.content.decode()
    assert "regions are on fire" in response.content.decode()
    admin_client.get("/fleet/clouds/")  # a failure is not cached: asked again, and listed now
    assert "Frankfurt 1" in admin_client.get("/fleet/clouds/").content.decode()


def test_it_says_why_the_catalogue_is_missing_when_the_cloud_is_unreachable(admin_client, db):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v2"
    ProviderCredential.objects.create(provider="digitalocean", token="t", base_url=url)
    response = admin_client.get("/fleet/clouds/")
    assert response.status_code == 200 and "Could not list the catalogue" in response.content.decode()


# --- cloud accounts: add, edit, default, remove ----------------------------------------------------


def test_it_adds_an_account_whose_token_the_cloud_accepts(admin_client, admin_user, do_fake):
    page = admin_client.get("/fleet/clouds/digitalocean/").content.decode()
    assert 'type="password"' in page
    response = admin_client.post(
        "/fleet/clouds/digitalocean/",
        {"token": do_fake.token, "base_url": do_fake.url, "default_region": "ams3", "is_default": "on"},
    )
    assert response.status_code == 302 and response["Location"] == "/fleet/clouds/"
    credential = ProviderCredential.objects.get()
    assert (credential.provider, credential.token, credential.default_region, credential.is_default) == (
        "digitalocean", do_fake.token, "ams3", True
    )  # fmt: skip
    do_fake.assert_requested("GET", "/account")
    assert AuditEvent.objects.get(action="cloud_account.saved").actor == admin_user
    assert "digitalocean accepted its token" in " ".join(_shown(admin_client, "/fleet/clouds/"))


def test_it_shows_the_clouds_refusal_of_a_token_on_the_form(admin_client, do_fake):
    response = admin_client.post(
        "/fleet/clouds/digitalocean/", {"token": "not-the-token", "base_url": do_fake.url}
    )
    assert response.status_code == 200
    assert "Unable to authenticate you" in _errors(response)["token"]
    assert "not-the-token" not in response.content.decode()  # never rendered back
    assert not ProviderCredential.objects.exists()


def test_it_asks_for_a_token_when_adding_an_account(admin_client, do_fake):
    response = admin_client.post("/fleet/clouds/digitalocean/", {"base_url": do_fake.url})
    assert "token is required" in _errors(response)["token"]
    assert not ProviderCredential.objects.exists()


def test_it_never_shows_the_stored_token_and_keeps_it_when_left_empty(admin_client, do_fake, do_account):
    page = admin_client.get("/fleet/clouds/digitalocean/").content.decode()
    assert do_fake.token not in page and "leave empty to keep the stored token" in page
    assert "Frankfurt 1" in page  # the catalogue, as suggestions for the defaults
    response = admin_client.post(
        "/fleet/clouds/digitalocean/", {"token": "", "base_url": do_fake.url, "default_size": "s-2vcpu-4gb"}
    )
    assert response.status_code == 302
    do_account.refresh_from_db()
    assert (do_account.token, do_account.default_size) == (do_fake.token, "s-2vcpu-4gb")


def test_it_answers_404_for_a_provider_that_has_no_cloud_account_to_add(admin_client, db):
    assert admin_client.get("/fleet/clouds/manual/").status_code == 404
    assert admin_client.get("/fleet/clouds/nope/").status_code == 404


def test_it_marks_one_account_as_the_default_for_auto_grow(admin_client, admin_user, do_fake, do_account):
    with LinodeFake() as linode:
        services.provider_credential_save(
            provider="linode", token=linode.token, base_url=linode.url, is_default=True
        )
        response = admin_client.post("/fleet/clouds/digitalocean/default", {"is_default": "true"})
    assert response.status_code == 302 and response["Location"] == "/fleet/clouds/"
    assert {c.provider: c.is_default for c in ProviderCredential.objects.all()} == {
        "digitalocean": True, "linode": False
    }  # fmt: skip
    do_account.refresh_from_db()
    assert do_account.token == do_fake.token and do_account.base_url == do_fake.url
    assert "Auto-grow now adds shared servers at digitalocean" in " ".join(
        _shown(admin_client, "/fleet/clouds/")
    )
    admin_client.post("/fleet/clouds/digitalocean/default", {"is_default": "false"})
    assert not ProviderCredential.objects.filter(is_default=True).exists()


def test_it_shows_the_clouds_refusal_when_marking_a_default_whose_token_was_revoked(
    admin_client, do_fake, do_account
):
    do_fake.fail_next(401, path="/account", message="Unable to authenticate you")
    back = {"HTTP_REFERER": "/fleet/clouds/"}
    admin_client.post("/fleet/clouds/digitalocean/default", {"is_default": "true"}, **back)
    assert "Unable to authenticate you" in " ".join(_shown(admin_client, "/fleet/clouds/"))
    do_account.refresh_from_db()
    assert not do_account.is_default


def test_it_removes_an_account(admin_client, do_account):
    response = admin_client.post("/fleet/clouds/digitalocean/delete")
    assert response.status_code == 302 and not ProviderCredential.objects.exists()
    assert AuditEvent.objects.filter(action="cloud_account.deleted").exists()


def test_it_refuses_to_remove_an_account_while_vpses_run_there(admin_client, do_account):
    Vps.objects.create(name="do-1", provider="digitalocean", status="active")
    admin_client.post("/fleet/clouds/digitalocean/delete", HTTP_REFERER="/fleet/clouds/")
    assert "1 VPS(es) still run at digitalocean" in " ".join(_shown(admin_client, "/fleet/clouds/"))
    assert ProviderCredential.objects.exists()


def test_it_says_there_is_no_account_to_remove(admin_client, db):
    admin_client.post("/fleet/clouds/linode/delete", HTTP_REFERER="/fleet/clouds/")
    assert "There is no linode cloud account." in _shown(admin_client, "/fleet/clouds/")


# --- the fleet page and creating a VPS ----------------------------------------------------------------


def test_it_offers_the_forms_on_an_empty_fleet_page(admin_client, db):
    page = admin_client.get("/fleet/").content.decode()
    assert "/api/v1/vps" not in page
    for link in ('href="/fleet/new"', 'href="/fleet/adopt"', 'href="/fleet/clouds/"'):
        assert link in page


def test_it_offers_clouds_with_an_account_and_local_only_when_enabled(admin_client, settings, do_account):
    settings.CHOM_LOCAL_PROVIDER = False
    choices = admin_client.get("/fleet/new").context["form"].fields["provider"].choices
    assert choices == [("digitalocean", "digitalocean")]
    settings.CHOM_LOCAL_PROVIDER = True
    choices = admin_client.get("/fleet/new").context["form"].fields["provider"].choices
    assert choices == [("digitalocean", "digitalocean"), ("local", "local")]


def test_it_suggests_the_clouds_regions_and_sizes(admin_client, do_account):
    page = admin_client.get("/fleet/new").content.decode()
    assert 'list="region-choices"' in page and 'list="size-choices"' in page
    assert '<option value="fra1">digitalocean: Frankfurt 1</option>' in page
    assert '<option value="s-2vcpu-4gb">digitalocean: 2 vCPUs, 4 GB</option>' in page


def test_it_points_to_the_cloud_accounts_when_there_is_nowhere_to_create(admin_client, settings, db):
    settings.CHOM_LOCAL_PROVIDER = False
    page = admin_client.get("/fleet/new").content.decode()
    assert "No cloud account yet" in page and "<select" not in page


def test_it_creates_a_vps_at_a_cloud_and_goes_to_its_operation(admin_client, admin_user, do_account):
    response = admin_client.post(
        "/fleet/new",
        {"name": "web-2", "provider": "digitalocean", "region": "ams3", "size": "s-2vcpu-4gb",
         "kind": "shared", "max_sites": 30},
    )  # fmt: skip
    op = _operation(response, "vps.create")
    vps = Vps.objects.get(name="web-2")
    assert (vps.provider, vps.region, vps.size, vps.kind, vps.max_sites, vps.status) == (
        "digitalocean", "ams3", "s-2vcpu-4gb", "shared", 30, "pending"
    )  # fmt: skip
    assert (op.target_id, op.created_by) == (str(vps.pk), admin_user)
    assert AuditEvent.objects.get(action="vps.created").actor == admin_user


def test_it_asks_the_cloud_for_what_the_form_chose(admin_client, db):
    """The operation the form queued, run up to the point where the cloud has the server."""
    with DigitalOceanFake(ready_after_gets=0) as fake:
        services.provider_credential_save(provider="digitalocean", token=fake.token, base_url=fake.url)
        admin_client.post(
            "/fleet/new",
            {"name": "web-2", "provider": "digitalocean", "region": "ams3", "size": "s-2vcpu-4gb",
             "kind": "shared", "max_sites": 30},
        )  # fmt: skip
        vps = Vps.objects.get(name="web-2")
        op = operation_claim(operation_id=Operation.objects.get(kind="vps.create").id)
        services.vps_provision(ctx=OperationContext(op), vps=vps)
        created = fake.assert_requested("POST", "/droplets").body
    assert (created["name"], created["region"], created["size"], created["image"]) == (
        "web-2", "ams3", "s-2vcpu-4gb", "debian-12-x64"
    )  # fmt: skip
    vps.refresh_from_db()
    assert vps.ip_address and vps.provider_id


def test_it_leaves_region_and_size_to_the_defaults_when_empty(admin_client, do_account):
    admin_client.post(
        "/fleet/new", {"name": "web-2", "provider": "digitalocean", "kind": "shared", "max_sites": 50}
    )
    vps = Vps.objects.get(name="web-2")
    assert (vps.region, vps.size) == ("", "")  # vps.create asks with the account's, else the cloud's


def test_it_creates_a_dedicated_vps_for_a_tenant(admin_client, do_account):
    tenant, _ = tenant_create(slug="bigco", tier="enterprise", owner_email="o@big.test")
    response = admin_client.post(
        "/fleet/new",
        {"name": "bigco-1", "provider": "digitalocean", "kind": "dedicated", "tenant": "bigco",
         "max_sites": 5},
    )  # fmt: skip
    _operation(response, "vps.create")
    assert Vps.objects.get(name="bigco-1").tenant == tenant


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"region": "mars-1"}, "region", "digitalocean does not offer the region 'mars-1'"),
        ({"size": "s-64vcpu"}, "size", "digitalocean does not offer the size 's-64vcpu'"),
        ({"name": "Web_2"}, "name", "lowercase letters, digits and dashes"),
        ({"name": "web-1"}, "name", "already exists"),
        ({"kind": "dedicated"}, "tenant", "A dedicated VPS belongs to one tenant"),
        ({"provider": "manual"}, "provider", "not one of the available choices"),
        ({"provider": "local"}, "provider", "not one of the available choices"),
        ({"max_sites": 0}, "max_sites", "greater than or equal to 1"),
    ],
)
def test_it_refuses_on_the_form_a_vps_the_api_would_refuse(
    admin_client, do_account, vps, body, field, message
):
    form = {"name": "web-2", "provider": "digitalocean", "kind": "shared", "max_sites": 10} | body
    response = admin_client.post("/fleet/new", form)
    assert response.status_code == 200
    assert message.lower() in _errors(response)[field].lower()
    assert not Operation.objects.exists() and Vps.objects.count() == 1


# --- bringing your own server -----------------------------------------------------------------------------


def test_it_shows_chom_s_key_as_a_one_line_install_command(admin_client, db):
    page = admin_client.get("/fleet/adopt").content.decode()
    key = services.fleet_key_get_or_create().public_key
    command = re.search(r'<code id="install-command">(.*?)</code>', page).group(1)
    assert "\n" not in command
    assert command.replace("&#x27;", "'") == (
        f"mkdir -p /root/.ssh &amp;&amp; chmod 700 /root/.ssh &amp;&amp; echo '{key}' &gt;&gt; "
        "/root/.ssh/authorized_keys &amp;&amp; chmod 600 /root/.ssh/authorized_keys"
    )


@pytest.mark.real
def test_it_shows_the_servers_host_key_and_pins_it_when_confirmed(admin_client, admin_user, tmp_path):
    with loopback_sshd(tmp_path / "sshd") as sshd:
        response = admin_client.post("/fleet/adopt", _server(sshd.port, max_sites=20))
        assert response.status_code == 200
        page = response.content.decode()
        assert f'<code id="fingerprint">{sshd.fingerprint}</code>' in page
        assert "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" in page
        assert not Vps.objects.exists()  # nothing before the operator confirms
        log = sshd.log.read_text()
        assert "publickey" not in log and "authenticating user" not in log  # the key exchange only
        confirmation = response.context["confirm_form"].initial["confirmation"]
    response = admin_client.post("/fleet/adopt/confirm", {"confirmation": confirmation})
    op = _operation(response, "vps.create")
    vps = Vps.objects.get()
    assert (vps.name, vps.provider, vps.ip_address, vps.ssh_port, vps.max_sites, vps.host_key) == (
        "own-1", "manual", "127.0.0.1", sshd.port, 20, sshd.host_key
    )  # fmt: skip
    assert op.created_by == admin_user


@pytest.mark.real
def test_it_logs_in_to_the_server_whose_key_was_pinned(tmp_path, db):
    fleet_key = services.fleet_key_get_or_create().public_key
    with loopback_sshd(tmp_path / "sshd", authorized_key=fleet_key) as sshd:
        vps, _ = services.vps_create(
            name="own-1", provider="manual", ip_address="127.0.0.1", ssh_port=sshd.port,
            host_key=sshd.host_key,
        )  # fmt: skip
        with services.transport_for(vps) as transport:
            assert transport.run(Command.of("echo", "pinned")).stdout == "pinned\n"


@pytest.mark.real
def test_it_refuses_to_bootstrap_a_server_that_presents_another_key(admin_client, tmp_path):
    with loopback_sshd(tmp_path / "first") as first:
        response = admin_client.post("/fleet/adopt", _server(first.port))
        confirmation = response.context["confirm_form"].initial["confirmation"]
    with loopback_sshd(tmp_path / "impostor") as impostor:
        admin_client.post("/fleet/adopt/confirm", {"confirmation": confirmation})
        vps = Vps.objects.get()
        Vps.objects.filter(pk=vps.pk).update(ssh_port=impostor.port)  # another server answers there now
        op = Operation.objects.get(kind="vps.create")
        assert operation_execute(operation_id=op.id) == "failed"
    op.refresh_from_db()
    vps.refresh_from_db()
    assert f"changed: expected {first.fingerprint}, got {impostor.fingerprint}" in op.error
    assert vps.status == "failed" and vps.host_key == first.host_key
    assert Alert.objects.get(name="vps_host_key_changed").status == "firing"


def test_it_says_so_when_nothing_answers_ssh_at_the_address(admin_client, db):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    response = admin_client.post("/fleet/adopt", _server(port))
    assert response.status_code == 200
    assert "could not read the server's host key: cannot reach 127.0.0.1" in _errors(response)["ip_address"]
    assert "install-command" in response.content.decode()
    assert not Vps.objects.exists()


def test_it_gives_up_on_a_server_that_never_speaks_ssh(admin_client, settings, db):
    settings.FLEET_SSH_CONNECT_TIMEOUT = 0.5
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        response = admin_client.post("/fleet/adopt", _server(silent.getsockname()[1]))
    assert "did not answer as an SSH server" in _errors(response)["ip_address"]


def test_it_refuses_a_server_without_an_address_before_reading_any_key(admin_client, db):
    response = admin_client.post("/fleet/adopt", {"name": "own-1", "ip_address": "$(id)", "ssh_port": 22})
    assert "ip_address" in _errors(response) and not Vps.objects.exists()


@pytest.mark.parametrize("confirmation", ["", "forged", "signed-with-another-salt"])
def test_it_refuses_a_confirmation_it_did_not_sign(admin_client, db, confirmation):
    from django.core import signing

    if confirmation == "signed-with-another-salt":
        body = _server(22) | {"provider": "manual", "host_key": "ssh-ed25519 AAAA"}
        confirmation = signing.dumps(body, salt="another")
    admin_client.post("/fleet/adopt/confirm", {"confirmation": confirmation}, HTTP_REFERER="/fleet/adopt")
    assert not Vps.objects.exists() and not Operation.objects.exists()
    assert _shown(admin_client, "/fleet/adopt")


def test_it_refuses_a_confirmation_older_than_its_time(admin_client, db, monkeypatch):
    from django.core import signing

    body = _server(22) | {"provider": "manual", "host_key": "ssh-ed25519 AAAA"}
    confirmation = signing.dumps(body, salt=ADOPT_SALT)
    monkeypatch.setattr("fleet.forms.ADOPT_MAX_AGE", -1)
    admin_client.post("/fleet/adopt/confirm", {"confirmation": confirmation}, HTTP_REFERER="/fleet/adopt")
    assert "has expired" in " ".join(_shown(admin_client, "/fleet/adopt"))
    assert not Vps.objects.exists()


# --- a VPS's page: bootstrap, capacity, cordon, destroy ------------------------------------------------


def test_it_bootstraps_a_vps_again(admin_client, admin_user, vps):
    op = _operation(admin_client.post(f"/fleet/{vps.pk}/bootstrap"), "vps.bootstrap")
    assert (op.target_id, op.created_by) == (str(vps.pk), admin_user)


def test_it_refuses_to_bootstrap_a_vps_being_destroyed(admin_client, vps):
    Vps.objects.filter(pk=vps.pk).update(status="decommissioning")
    admin_client.post(f"/fleet/{vps.pk}/bootstrap", HTTP_REFERER=f"/fleet/{vps.pk}/")
    assert "This VPS is being deleted." in _shown(admin_client, f"/fleet/{vps.pk}/")
    assert not Operation.objects.exists()


def test_it_changes_the_capacity(admin_client, admin_user, vps):
    response = admin_client.post(f"/fleet/{vps.pk}/capacity", {"max_sites": 25})
    assert response.status_code == 302 and response["Location"] == f"/fleet/{vps.pk}/"
    vps.refresh_from_db()
    assert vps.max_sites == 25
    event = AuditEvent.objects.get(action="vps.updated")
    assert (event.actor, event.data) == (admin_user, {"max_sites": 25})


@pytest.mark.parametrize("max_sites", ["0", "10001", "many", ""])
def test_it_refuses_a_capacity_the_api_would_refuse(admin_client, vps, max_sites):
    admin_client.post(f"/fleet/{vps.pk}/capacity", {"max_sites": max_sites}, HTTP_REFERER=f"/fleet/{vps.pk}/")
    assert _shown(admin_client, f"/fleet/{vps.pk}/")
    vps.refresh_from_db()
    assert vps.max_sites == 10 and not AuditEvent.objects.filter(action="vps.updated").exists()


def test_it_cordons_a_vps_so_it_takes_no_new_sites_and_uncordons_it(admin_client, admin_user, vps):
    assert selectors.vps_allocate() == vps
    response = admin_client.post(f"/fleet/{vps.pk}/cordon", {"cordoned": "true"})
    assert response.status_code == 302
    vps.refresh_from_db()
    assert vps.cordoned and selectors.vps_allocate() is None
    assert AuditEvent.objects.get(action="vps.cordoned").actor == admin_user
    page = admin_client.get(f"/fleet/{vps.pk}/").content.decode()
    assert "takes no new sites" in page and "Uncordon" in page
    admin_client.post(f"/fleet/{vps.pk}/cordon", {"cordoned": "false"})
    vps.refresh_from_db()
    assert not vps.cordoned and selectors.vps_allocate() == vps
    assert AuditEvent.objects.filter(action="vps.uncordoned").exists()


def test_it_refuses_a_cordon_request_that_says_neither(admin_client, vps):
    admin_client.post(f"/fleet/{vps.pk}/cordon", {}, HTTP_REFERER=f"/fleet/{vps.pk}/")
    assert _shown(admin_client, f"/fleet/{vps.pk}/")
    vps.refresh_from_db()
    assert not vps.cordoned and not AuditEvent.objects.filter(action__startswith="vps.").exists()


@pytest.mark.parametrize("typed", ["", "web-2", "WEB-1", "web-"])
def test_it_destroys_nothing_when_the_typed_name_differs(admin_client, vps, typed):
    response = admin_client.post(f"/fleet/{vps.pk}/delete", {"confirm": typed})
    assert response.status_code == 200 and _errors(response)["confirm"]
    if typed:
        assert "nothing was destroyed" in response.content.decode()
    vps.refresh_from_db()
    assert vps.status == "active" and not Operation.objects.exists()
    assert not AuditEvent.objects.filter(action="vps.delete_requested").exists()


def test_it_destroys_a_vps_when_its_name_is_typed(admin_client, admin_user, vps):
    assert admin_client.get(f"/fleet/{vps.pk}/delete").status_code == 200
    op = _operation(admin_client.post(f"/fleet/{vps.pk}/delete", {"confirm": " web-1 "}), "vps.destroy")
    vps.refresh_from_db()
    assert vps.status == "decommissioning" and op.created_by == admin_user
    assert AuditEvent.objects.get(action="vps.delete_requested").actor == admin_user
    assert "being destroyed" in admin_client.get(f"/fleet/{vps.pk}/").content.decode()


def test_it_refuses_to_destroy_a_vps_with_live_sites(admin_client, alice, vps):
    Site.objects.create(tenant=alice.tenant, vps=vps, domain="shop.example", type="static", status="active")
    admin_client.post(f"/fleet/{vps.pk}/delete", {"confirm": "web-1"}, HTTP_REFERER=f"/fleet/{vps.pk}/delete")
    assert "1 site(s) still live on web-1" in " ".join(_shown(admin_client, f"/fleet/{vps.pk}/delete"))
    vps.refresh_from_db()
    assert vps.status == "active" and not Operation.objects.exists()


# --- who may -----------------------------------------------------------------------------------------------

ACTIONS = [
    ("new", {"name": "web-2", "provider": "digitalocean", "kind": "shared", "max_sites": 5}),
    ("adopt", {"name": "own-1", "ip_address": "127.0.0.1", "ssh_port": 1, "kind": "shared", "max_sites": 5}),
    ("adopt/confirm", {"confirmation": "x"}),
    ("{pk}/bootstrap", {}),
    ("{pk}/capacity", {"max_sites": 3}),
    ("{pk}/cordon", {"cordoned": "true"}),
    ("{pk}/delete", {"confirm": "web-1"}),
    ("clouds/digitalocean/", {"token": "other", "default_region": "nyc3"}),
    ("clouds/digitalocean/default", {"is_default": "true"}),
    ("clouds/digitalocean/delete", {}),
]


def _unchanged(vps, credential) -> None:
    vps.refresh_from_db()
    credential.refresh_from_db()
    assert (vps.status, vps.max_sites, vps.cordoned, Vps.objects.count()) == ("active", 10, False, 1)
    assert (credential.default_region, credential.is_default) == ("", False)
    assert not Operation.objects.exists()


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_it_sends_a_non_staff_user_to_log_in_and_changes_nothing(client, alice, vps, do_account, path, body):
    client.force_login(alice.user)
    response = client.post(f"/fleet/{path.format(pk=vps.pk)}", body)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    _unchanged(vps, do_account)


PAGES = ["", "new", "adopt", "{pk}/", "{pk}/delete", "clouds/", "clouds/digitalocean/"]


@pytest.mark.parametrize("path", PAGES)
def test_it_shows_no_fleet_page_to_a_non_staff_user(client, alice, vps, path):
    client.force_login(alice.user)
    response = client.get(f"/fleet/{path.format(pk=vps.pk)}")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_it_refuses_a_post_without_the_csrf_token(admin_user, vps, do_account, path, body):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(f"/fleet/{path.format(pk=vps.pk)}", body)
    assert response.status_code == 403
    _unchanged(vps, do_account)


def test_it_accepts_a_post_from_its_own_form_with_the_csrf_token(admin_user, vps):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    token = client.get(f"/fleet/{vps.pk}/").context["csrf_token"]
    response = client.post(f"/fleet/{vps.pk}/cordon", {"cordoned": "true", "csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    vps.refresh_from_db()
    assert vps.cordoned


# --- every page: one heading, a label for every input ------------------------------------------------------


def test_every_fleet_page_has_one_h1_and_labels_for_its_inputs(admin_client, vps, do_account):
    pages = ["/fleet/", "/fleet/new", "/fleet/adopt", f"/fleet/{vps.pk}/", f"/fleet/{vps.pk}/delete",
             "/fleet/clouds/", "/fleet/clouds/digitalocean/", "/fleet/clouds/linode/"]  # fmt: skip
    for path in pages:
        page = admin_client.get(path).content.decode()
        assert page.count("<h1") == 1, path
        labelled = set(re.findall(r'<label for="([^"]+)"', page))
        for found in re.finditer(r"<(?:input|select|textarea)\b[^>]*>", page):
            tag, before = found.group(), page[: found.start()]
            if 'type="hidden"' in tag or before.rfind("<label") > before.rfind("</label>"):  # inside one
                continue
            ident = re.search(r'id="([^"]+)"', tag)
            assert ident and ident.group(1) in labelled, (path, tag)
