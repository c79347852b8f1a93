"""The runtime-controls API: redirects, response headers, basic-auth users and PHP settings. A
refused value is a 400 (or 409) in the one error shape and leaves no row, no operation and no
audit entry behind; an accepted one is saved and answered 202 with the `site.runtime` operation."""

import pytest

from chom.models import AuditEvent, Operation
from fleet.models import Vps
from sites.configs import render_pool, render_vhost
from sites.models import BasicAuthUser, Redirect, ResponseHeader, Site
from sites.runtime import site_basic_auth_set
from sites.runtime_configs import htpasswd_files, realm_key
from sites.services import site_create, vhost_spec


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10,
        php_versions=["8.2"],
    )  # fmt: skip


def _site(persona, type_="php") -> Site:
    site, _, _ = site_create(tenant=persona.tenant, domain=f"{type_}.example.com", type=type_)
    Site.objects.filter(pk=site.pk).update(status="active", current_release="r1")
    Operation.objects.all().delete()  # the create's deploy
    return Site.objects.get(pk=site.pk)


def _nothing_happened(site: Site) -> None:
    assert not Redirect.objects.filter(site=site).exists()
    assert not ResponseHeader.objects.filter(site=site).exists()
    assert not BasicAuthUser.objects.filter(site=site).exists()
    assert not Operation.objects.exists()
    assert not AuditEvent.objects.filter(action__regex=r"^site\.(redirect|header|basic)").exists()


LONG = "a" * 3000
HOSTILE_PATHS = [
    "/a;b", "/a}", "/a{", "/a\nb", "/a\rb", "/$request_uri", "/a\"b", "/a'b", "/a\\b", "/a#b", "/caf\u00e9",
    "/a b", "/a%2fb", "/../etc", "/a/./b", "//a", "relative", "", "/" + LONG, "/a\x00",
    "/.well-known/acme-challenge", "/.well-known/acme-challenge/x", "/.well-known",
]  # fmt: skip
HOSTILE_TARGETS = [
    "https://x.test/a}b", "https://x.test/{", "https://x.test/\nLocation: evil", "https://x.test/$request_uri",
    "https://x.test/${host}", 'https://x.test/"', "https://x.test/\\", "https://x.test/caf\u00e9",
    "https://x.test/a b", "javascript:alert(1)", "ftp://x.test/", "//x.test/a", "https://", "",
    "https://x.test/" + LONG,
]  # fmt: skip
HOSTILE_HEADER_NAMES = [
    "X-A;b", "X-A}", "X-{", "X-A\nB", "X-$host", 'X-"', "X-\\", "X-#", "X-\u00e9", "X A", "X_A", "X:A", "",
    "X" * 65, "Content-Length", "transfer-encoding", "Connection", "Host", "X-Chom-Site", "x-chom-other",
    "Set-Cookie", "Strict-Transport-Security", "WWW-Authenticate", "Location", "Content-Type",
]  # fmt: skip
HOSTILE_HEADER_VALUES = [
    "a\nb", "a\r\nX-Evil: 1", "a\x00b", "a\tb", "\x7f", "$request_uri", "${host}", "cost: $5", "caf\u00e9",
    "\u202e", "x" * 1025,
]  # fmt: skip


def _post(persona, site, what, body):
    return persona.client().post(f"/api/v1/sites/{site.pk}/{what}", body, format="json")


def _refused(response, field=None):
    assert response.status_code in (400, 409), response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"]
    if field:
        assert field in body["error"]["fields"], body


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_it_refuses_a_hostile_redirect_source(alice, vps, path):
    site = _site(alice)
    _refused(_post(alice, site, "redirects", {"from": path, "to": "/new"}), "from")
    _refused(_post(alice, site, "redirects", {"from": path, "match": "prefix", "to": "/new"}), "from")
    _nothing_happened(site)


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_it_refuses_a_hostile_redirect_target(alice, vps, target):
    site = _site(alice)
    _refused(_post(alice, site, "redirects", {"from": "/old", "to": target}), "to")
    _nothing_happened(site)


@pytest.mark.parametrize("name", HOSTILE_HEADER_NAMES)
def test_it_refuses_a_hostile_or_reserved_header_name(alice, vps, name):
    site = _site(alice)
    _refused(_post(alice, site, "headers", {"name": name, "value": "x"}), "name")
    _nothing_happened(site)


@pytest.mark.parametrize("value", HOSTILE_HEADER_VALUES)
def test_it_refuses_a_hostile_header_value(alice, vps, value):
    site = _site(alice)
    _refused(_post(alice, site, "headers", {"name": "X-Test", "value": value}), "value")
    _nothing_happened(site)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"path": "/a;b", "username": "u", "password": "long enough"}, "path"),
        ({"path": "/$uri", "username": "u", "password": "long enough"}, "path"),
        ({"path": "/", "username": "u:x", "password": "long enough"}, "username"),
        ({"path": "/", "username": "u\nv", "password": "long enough"}, "username"),
        ({"path": "/", "username": "", "password": "long enough"}, "username"),
        ({"path": "/", "username": "u", "password": "short"}, "password"),
        ({"path": "/", "username": "u", "password": "x" * 73}, "password"),
        ({"path": "/", "username": "u", "password": "nul\x00 inside it"}, "password"),
    ],
)
def test_it_refuses_hostile_basic_auth_input(alice, vps, body, field):
    site = _site(alice)
    _refused(_post(alice, site, "basic-auth", body), field)
    _nothing_happened(site)


def test_it_creates_a_redirect_and_queues_the_runtime_operation(alice, vps):
    site = _site(alice)
    body = {"from": "/old/", "match": "prefix", "to": "https://example.org/new", "status": 308}
    response = _post(alice, site, "redirects", body)
    assert response.status_code == 202, response.content
    data = response.json()
    assert (data["from"], data["match"], data["to"], data["status"], data["preserve_query"]) == (
        "/old", "prefix", "https://example.org/new", 308, True,
    )  # fmt: skip
    op = Operation.objects.get(id=data["operation"]["id"])
    assert (op.kind, op.status) == ("site.runtime", "queued")
    assert response["Location"] == f"/api/v1/sites/{site.pk}/redirects/{data['id']}"
    listed = alice.client().get(f"/api/v1/sites/{site.pk}/redirects").json()
    assert listed["count"] == 1 and listed["results"][0]["from"] == "/old"
    vhost = render_vhost(vhost_spec(site))
    assert 'location = "/old" { return 308 "https://example.org/new$is_args$args"; }' in vhost
    assert 'location ^~ "/old/" {' in vhost
    assert AuditEvent.objects.filter(action="site.redirect_created").count() == 1


def test_it_refuses_a_second_redirect_of_the_same_path_and_a_query_that_cannot_be_kept(alice, vps):
    site = _site(alice)
    assert _post(alice, site, "redirects", {"from": "/old", "to": "/new"}).status_code == 202
    response = _post(alice, site, "redirects", {"from": "/old/", "match": "prefix", "to": "/newer"})
    assert response.status_code == 409
    _refused(_post(alice, site, "redirects", {"from": "/x", "to": "/y?a=1"}), "to")
    assert (
        _post(alice, site, "redirects", {"from": "/x", "to": "/y?a=1", "preserve_query": False}).status_code
        == 202
    )
    _refused(_post(alice, site, "redirects", {"from": "/", "match": "prefix", "to": "/y"}), "from")
    _refused(_post(alice, site, "redirects", {"from": "/self", "to": "/self"}), "to")
    _refused(_post(alice, site, "redirects", {"from": "/z", "to": "/y", "status": 303}), "status")


def test_it_deletes_a_redirect_with_an_operation_and_404s_another_sites(alice, charlie, vps):
    site = _site(alice)
    rid = _post(alice, site, "redirects", {"from": "/old", "to": "/new"}).json()["id"]
    Operation.objects.all().delete()
    assert charlie.client().delete(f"/api/v1/sites/{site.pk}/redirects/{rid}").status_code == 404
    response = alice.client().delete(f"/api/v1/sites/{site.pk}/redirects/{rid}")
    assert response.status_code == 202
    assert Operation.objects.get(id=response.json()["operation"]["id"]).kind == "site.runtime"
    assert not Redirect.objects.exists()
    assert alice.client().delete(f"/api/v1/sites/{site.pk}/redirects/{rid}").status_code == 404


def test_it_accepts_header_values_with_quotes_semicolons_and_braces_rendered_inert(alice, vps):
    site = _site(alice)
    value = "default-src 'self'; a \"quoted\" \\ {braced} #hash"
    response = _post(alice, site, "headers", {"name": "Content-Security-Policy", "value": value})
    assert response.status_code == 202, response.content
    assert response.json()["value"] == value
    vhost = render_vhost(vhost_spec(site))
    rendered = '"default-src \'self\'; a \\"quoted\\" \\\\ {braced} #hash"'
    assert f'add_header "Content-Security-Policy" {rendered} always;' in vhost
    _refused(_post(alice, site, "headers", {"name": "content-security-policy", "value": "x"}))


def test_it_stores_only_a_bcrypt_hash_and_never_lists_it(alice, vps):
    site = _site(alice)
    body = {"path": "/admin/", "username": "alice", "password": "correct horse battery"}
    response = _post(alice, site, "basic-auth", body)
    assert response.status_code == 202, response.content
    assert "password" not in response.json() and "correct horse" not in response.content.decode()
    row = BasicAuthUser.objects.get()
    assert row.path_prefix == "/admin" and row.password_hash.startswith("$2b$10$")
    listed = alice.client().get(f"/api/v1/sites/{site.pk}/basic-auth").json()
    assert [(u["path"], u["username"]) for u in listed["results"]] == [("/admin", "alice")]
    assert "$2b$" not in str(listed)
    assert "correct horse" not in str(list(AuditEvent.objects.values_list("data", flat=True)))
    again = _post(alice, site, "basic-auth", body | {"password": "another password"})
    assert again.status_code == 202 and BasicAuthUser.objects.count() == 1
    assert BasicAuthUser.objects.get().password_hash != row.password_hash
    assert htpasswd_files(site) == {
        realm_key("/admin"): [["alice", BasicAuthUser.objects.get().password_hash]]
    }
    vhost = render_vhost(vhost_spec(site))
    assert '"~^/admin(/|$)"' in vhost and "auth_basic off;" in vhost


def test_it_refuses_a_viewer_and_another_tenant(alice, victor, charlie, vps):
    site = _site(alice)
    assert _post(victor, site, "headers", {"name": "X-A", "value": "b"}).status_code == 403
    assert _post(charlie, site, "headers", {"name": "X-A", "value": "b"}).status_code == 404
    assert charlie.client().get(f"/api/v1/sites/{site.pk}/headers").status_code == 404
    _nothing_happened(site)


def test_it_sets_php_settings_normalised_within_the_tier(alice, vps):
    site = _site(alice)  # pro: memory 512M, uploads 256M, 300 s, 10000 vars
    url = f"/api/v1/sites/{site.pk}/php-settings"
    body = {"memory_limit": "0.5G"}
    assert alice.client().patch(url, {"settings": body}, format="json").status_code == 400
    body = {
        "memory_limit": "512m",
        "upload_max_filesize": 100,
        "post_max_size": "1g",
        "max_execution_time": "120",
    }
    response = alice.client().patch(url, {"settings": body}, format="json")
    assert response.status_code == 400 and set(response.json()["error"]["fields"]) == {"post_max_size"}
    body["post_max_size"] = "128M"
    response = alice.client().patch(url, {"settings": body}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["settings"] == {
        "memory_limit": "512M", "upload_max_filesize": "100M", "post_max_size": "128M",
        "max_execution_time": "120",
    }  # fmt: skip
    assert Operation.objects.get().kind == "site.runtime"
    site.refresh_from_db()
    pool = render_pool(name=site.unix_user, php_version="8.2", php_settings=site.php_settings)
    assert (
        "php_admin_value[memory_limit] = 512M" in pool and "php_admin_value[max_execution_time] = 120" in pool
    )
    vhost = render_vhost(vhost_spec(site))
    assert "client_max_body_size 128m;" in vhost and "fastcgi_read_timeout 130s;" in vhost
    same = alice.client().patch(url, {"settings": {"memory_limit": "512M"}}, format="json")
    assert same.status_code == 200 and Operation.objects.count() == 1
    back = alice.client().patch(url, {"settings": {"memory_limit": None}}, format="json")
    assert back.status_code == 202 and back.json()["effective"]["memory_limit"] == "256M"


@pytest.mark.parametrize(
    "settings",
    [
        {"memory_limit": "513M"},
        {"memory_limit": "-1"},
        {"memory_limit": "16M"},
        {"memory_limit": "256M; evil"},
        {"memory_limit": "256M\nphp_admin_value[open_basedir] = /"},
        {"upload_max_filesize": "257M"},
        {"max_execution_time": 0},
        {"max_execution_time": 301},
        {"max_execution_time": True},
        {"max_input_vars": 10001},
        {"max_input_vars": "1e3"},
        {"open_basedir": "/"},
        {"disable_functions": ""},
    ],
)
def test_it_refuses_php_settings_outside_the_allow_list_or_the_tier(alice, vps, settings):
    site = _site(alice)
    response = alice.client().patch(
        f"/api/v1/sites/{site.pk}/php-settings", {"settings": settings}, format="json"
    )
    _refused(response)
    site.refresh_from_db()
    assert site.php_settings == {} and not Operation.objects.exists()


def test_it_refuses_php_settings_for_a_static_site(alice, vps):
    site = _site(alice, "static")
    response = alice.client().patch(
        f"/api/v1/sites/{site.pk}/php-settings", {"settings": {"memory_limit": "128M"}}, format="json"
    )
    _refused(response, "settings")


def test_the_service_hashes_with_a_salt_per_user(alice, vps):
    site = _site(alice)
    first, _ = site_basic_auth_set(site=site, path="/", username="a", password="same password")
    second, _ = site_basic_auth_set(site=site, path="/", username="b", password="same password")
    assert first.password_hash != second.password_hash
