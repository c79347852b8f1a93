"""The environment API (names without values, PUT replaces, PATCH merges, the audited reveal) and
deploy hooks in the site API."""

import pytest
from django.db import connection

from chom.models import AuditEvent, Operation
from fleet.models import Vps
from sites.environment import env_apply_payload
from sites.models import Site, SiteVariable
from sites.services import site_create


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1",
        provider="manual",
        ip_address="192.0.2.10",
        status="active",
        max_sites=10,
        php_versions=["8.2"],
    )


def _site(persona, type_="laravel") -> Site:
    repository = {"url": "https://git.example/app.git", "branch": "main"} if type_ == "laravel" else None
    site, _, _ = site_create(
        tenant=persona.tenant, domain=f"{type_}.example.com", type=type_, repository=repository
    )
    Site.objects.filter(pk=site.pk).update(status="active", current_release="r1")
    Operation.objects.all().delete()  # the create's deploy: not what these tests look at
    return Site.objects.get(pk=site.pk)


def _url(site, suffix=""):
    return f"/api/v1/sites/{site.pk}/environment{suffix}"


def _send(persona, method, site, variables):
    return getattr(persona.client(), method)(_url(site), {"variables": variables}, format="json")


def test_it_stores_variables_encrypted_and_lists_names_without_values(alice, vps):
    site = _site(alice)
    response = _send(alice, "put", site, {"GREETING": "hello-there", "API_TOKEN": "tok-secret-123"})
    assert response.status_code == 202, response.content
    op = Operation.objects.get(id=response.json()["operation"]["id"])
    assert (op.kind, op.status, op.params) == ("site.environment", "queued", {})
    listed = alice.client().get(_url(site)).json()
    assert [v["name"] for v in listed["variables"]] == ["API_TOKEN", "GREETING"]
    assert all(v["secret"] is True and v["updated_at"] for v in listed["variables"])
    assert "hello-there" not in str(listed) and "tok-secret-123" not in str(listed)
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM sites_sitevariable")
        stored = " ".join(row[0] for row in cursor.fetchall())
    assert "hello-there" not in stored and "tok-secret-123" not in stored


def test_it_replaces_with_put_and_merges_with_patch_where_null_deletes(alice, vps):
    site = _site(alice)
    _send(alice, "put", site, {"A": "1", "B": "2"})
    Operation.objects.all().delete()
    assert _send(alice, "patch", site, {"B": None, "C": "3", "A": "one"}).status_code == 202
    assert dict(site.variables.values_list("name", "value")) == {"A": "one", "C": "3"}
    Operation.objects.all().delete()
    assert _send(alice, "put", site, {"D": "4"}).status_code == 202
    assert dict(site.variables.values_list("name", "value")) == {"D": "4"}
    audit = AuditEvent.objects.filter(action="site.environment_changed").order_by("id")
    assert [e.data.get("removed") for e in audit] == [[], ["B"], ["A", "C"]]
    assert "one" not in str([e.data for e in audit])


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"lower": "x"}, "lower"),
        ({"1ABC": "x"}, "1ABC"),
        ({"A-B": "x"}, "A-B"),
        ({"A" * 65: "x"}, "A" * 65),
        ({"BIG": "x" * 8193}, "BIG"),
        ({"DB_PASSWORD": "mine"}, "DB_PASSWORD"),
        ({"APP_KEY": "base64:mine"}, "APP_KEY"),
        ({"DB_PORT": "3307"}, "DB_PORT"),
    ],
)
def test_it_refuses_bad_names_values_and_managed_names_with_field_errors(alice, vps, variables, field):
    site = _site(alice)
    response = _send(alice, "put", site, variables)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]["variables"]
    assert not SiteVariable.objects.exists() and not Operation.objects.exists()


def test_it_refuses_nul_a_null_in_put_and_more_than_200_names(alice, vps):
    site = _site(alice)
    for variables in ({"A": "x\x00y"}, {"A": None}, {f"V{i}": "x" for i in range(201)}, ["A"]):
        response = _send(alice, "put", site, variables)
        assert response.status_code == 400, (variables, response.content)
        assert "variables" in response.json()["error"]["fields"]
    _send(alice, "put", site, {f"V{i}": "x" for i in range(200)})
    response = _send(alice, "patch", site, {"ONE_MORE": "x"})
    assert response.status_code == 400 and site.variables.count() == 200


def test_it_lets_laravel_override_app_settings_but_php_keeps_its_db_names(alice, vps):
    laravel = _site(alice)
    assert _send(alice, "put", laravel, {"APP_ENV": "staging", "APP_DEBUG": "true"}).status_code == 202
    payload = env_apply_payload(Site.objects.get(pk=laravel.pk))
    assert payload["site_env"]["variables"] == {"APP_DEBUG": "true", "APP_ENV": "staging"}
    assert "APP_ENV" not in payload["site_env"]["managed"] and payload["site_env"]["managed"]["APP_KEY"]
    assert payload["config_cache"] is True and payload["php_version"] == "8.2"
    php = _site(alice, "php")
    assert _send(alice, "put", php, {"APP_ENV": "staging"}).status_code == 202
    assert _send(alice, "put", php, {"DB_HOST": "elsewhere"}).status_code == 400
    assert env_apply_payload(Site.objects.get(pk=php.pk))["config_cache"] is False


@pytest.mark.parametrize("type_", ["static", "wordpress"])
def test_it_refuses_types_without_an_environment_with_a_clear_message(alice, vps, type_):
    site = _site(alice, type_)
    response = _send(alice, "put", site, {"A": "1"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "environment_unsupported"
    assert type_.replace("wordpress", "WordPress").split()[0] in response.json()["error"]["message"]


def test_it_reveals_values_to_owners_only_and_audits_it(alice, bob, vps):
    site = _site(alice)
    _send(alice, "put", site, {"GREETING": "hello"})
    assert bob.client().post(_url(site, "/reveal")).status_code == 403
    response = alice.client().post(_url(site, "/reveal"))
    assert response.status_code == 200 and response.json() == {"variables": {"GREETING": "hello"}}
    event = AuditEvent.objects.get(action="site.environment_revealed")
    assert event.data == {"names": ["GREETING"]} and event.actor == alice.user


def test_it_walls_other_tenants_and_readers_off(alice, charlie, victor, vps):
    site = _site(alice)
    assert charlie.client().get(_url(site)).status_code == 404
    assert _send(charlie, "put", site, {"A": "1"}).status_code == 404
    assert victor.client().get(_url(site)).status_code == 200
    assert _send(victor, "patch", site, {"A": "1"}).status_code == 403
    assert not SiteVariable.objects.exists()


# --- deploy hooks --------------------------------------------------------------------------------


def test_it_saves_hooks_without_a_redeploy_and_shows_them_in_the_detail(alice, vps):
    site = _site(alice)
    hooks = {"build": ["npm", "run", "build"], "release": ["php", "artisan", "queue:restart"]}
    response = alice.client().patch(f"/api/v1/sites/{site.pk}", {"hooks": hooks}, format="json")
    assert response.status_code == 200, response.content
    assert not Operation.objects.exists()
    assert alice.client().get(f"/api/v1/sites/{site.pk}").json()["hooks"] == hooks
    response = alice.client().patch(f"/api/v1/sites/{site.pk}", {"hooks": {"build": []}}, format="json")
    assert alice.client().get(f"/api/v1/sites/{site.pk}").json()["hooks"] == {
        "build": [],
        "release": hooks["release"],
    }


@pytest.mark.parametrize(
    "hook",
    ["npm run build; rm -rf /", [""], ["x"] * 51, ["a" * 1001], ["echo", "nul\x00"], [{"a": 1}], None],
)
def test_it_refuses_hooks_that_are_not_argv_lists(alice, vps, hook):
    site = _site(alice)
    response = alice.client().patch(f"/api/v1/sites/{site.pk}", {"hooks": {"build": hook}}, format="json")
    assert response.status_code == 400, response.content
    assert "build" in response.json()["error"]["fields"]["hooks"]
    assert Site.objects.get(pk=site.pk).build_command == []
