"""Runtime controls end to end on a real nspawn VPS: a redirect and a header served by nginx as
configured; every hostile value a 400 that leaves the vhost on the VPS byte-identical; basic auth
(PHP under the prefix included) 401 without credentials and 200 with them; memory_limit set
through the API in phpinfo() of that site only."""

import re

import pytest
import requests

from chom.models import Operation
from chom.operations import operation_execute
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.models import Site
from tests.support.git import GitServer, git_repo

pytestmark = pytest.mark.e2e

FILES = {
    "index.php": "<?php echo 'memory_limit=' . ini_get('memory_limit');",
    "info.php": "<?php phpinfo(INFO_CONFIGURATION);",
    "admin/secret.php": "<?php echo 'secret ran';",
}
HOSTILE = [
    ("redirects", {"from": "/a;b", "to": "/new"}),
    ("redirects", {"from": "/a}", "to": "/new"}),
    ("redirects", {"from": "/a{", "to": "/new"}),
    ("redirects", {"from": "/a\nb", "to": "/new"}),
    ("redirects", {"from": "/$request_uri", "to": "/new"}),
    ("redirects", {"from": '/a"b', "to": "/new"}),
    ("redirects", {"from": "/a\\b", "to": "/new"}),
    ("redirects", {"from": "/a#b", "to": "/new"}),
    ("redirects", {"from": "/caf\u00e9", "to": "/new"}),
    ("redirects", {"from": "/" + "a" * 600, "to": "/new"}),
    ("redirects", {"from": "/x", "to": "https://e.test/}"}),
    ("redirects", {"from": "/x", "to": "https://e.test/\nX-Evil: 1"}),
    ("redirects", {"from": "/x", "to": "https://e.test/$host"}),
    ("redirects", {"from": "/x", "to": 'https://e.test/"'}),
    ("redirects", {"from": "/x", "to": "https://e.test/caf\u00e9"}),
    ("headers", {"name": "X-A;b", "value": "v"}),
    ("headers", {"name": "X-A}", "value": "v"}),
    ("headers", {"name": "X-$host", "value": "v"}),
    ("headers", {"name": "Content-Length", "value": "0"}),
    ("headers", {"name": "X-Chom-Site", "value": "other"}),
    ("headers", {"name": "X-A", "value": "a\nb"}),
    ("headers", {"name": "X-A", "value": "a\r\nSet-Cookie: x=1"}),
    ("headers", {"name": "X-A", "value": "$request_uri"}),
    ("headers", {"name": "X-A", "value": "caf\u00e9"}),
    ("headers", {"name": "X-A", "value": "x" * 5000}),
    ("basic-auth", {"path": "/a;b", "username": "u", "password": "long enough"}),
    ("basic-auth", {"path": "/", "username": "u:x", "password": "long enough"}),
]


def _execute(response) -> Operation:
    assert response.status_code == 202, response.content
    operation_execute(operation_id=response.json()["operation"]["id"])
    return Operation.objects.get(id=response.json()["operation"]["id"])


def _ok(response) -> Operation:
    op = _execute(response)
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())
    return op


def _sh(vps, *argv) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    return result.stdout + result.stderr


def _get(vps, host: str, path: str, **kwargs) -> requests.Response:
    return requests.get(
        f"http://{vps.ip_address}{path}", headers={"Host": host}, timeout=10, allow_redirects=False, **kwargs
    )


def _phpinfo_memory_limit(vps, host: str) -> str:
    page = _get(vps, host, "/info.php").text
    match = re.search(r"memory_limit</td><td class=\"v\">([^<]+)</td>", page)
    assert match, page[:500]
    return match.group(1)


def test_it_serves_redirects_headers_basic_auth_and_php_settings_per_site(
    alice, make_vps, fleet_network, tmp_path
):
    network, _, _ = fleet_network
    vps = make_vps("e2e-runtime")
    repo = tmp_path / "app"
    git_repo(repo, FILES, "v1")
    (tmp_path / "srv").mkdir()
    server = GitServer(tmp_path / "srv", network.gateway)
    url = server.publish(repo, "app.git")
    client = alice.client()
    try:
        sites = {}
        for host in ("rt-a.test", "rt-b.test"):
            body = {"domain": host, "type": "php", "repository": {"url": url, "branch": "main"}}
            response = client.post("/api/v1/sites", body, format="json")
            _ok(response)
            sites[host] = Site.objects.get(pk=response.json()["id"])
        site, other = sites["rt-a.test"], sites["rt-b.test"]
        base = f"/api/v1/sites/{site.pk}"
        vhost = f"/etc/nginx/sites-available/chom-{site.unix_user}.conf"

        # A redirect and a header, served by nginx as configured.
        body = {"from": "/old", "to": "/index.php", "status": 308, "preserve_query": True}
        _ok(client.post(f"{base}/redirects", body, format="json"))
        value = "default-src 'self'; a \"quoted\" {brace} #hash \\ end"
        _ok(
            client.post(f"{base}/headers", {"name": "Content-Security-Policy", "value": value}, format="json")
        )
        answer = _get(vps, "rt-a.test", "/old?x=1&y=%0D%0A")
        assert (
            answer.status_code == 308
            and answer.headers["Location"] == "http://rt-a.test/index.php?x=1&y=%0D%0A"
        )
        answer = _get(vps, "rt-a.test", "/")
        assert answer.headers["Content-Security-Policy"] == value
        assert answer.text == "memory_limit=256M"
        assert "Content-Security-Policy" not in _get(vps, "rt-b.test", "/").headers

        # Every hostile value is a 400 and nothing changes on the VPS.
        before = _sh(vps, "sha256sum", vhost)
        queued = Operation.objects.count()
        for what, body in HOSTILE:
            response = client.post(f"{base}/{what}", body, format="json")
            assert response.status_code == 400, (what, body, response.content)
        assert Operation.objects.count() == queued
        assert _sh(vps, "sha256sum", vhost) == before

        # Basic auth on /admin: PHP below it is protected too; the rest of the site is not.
        body = {"path": "/admin", "username": "alice", "password": "correct horse battery"}
        _ok(client.post(f"{base}/basic-auth", body, format="json"))
        assert _get(vps, "rt-a.test", "/admin/secret.php").status_code == 401
        assert _get(vps, "rt-a.test", "/%61dmin/secret.php").status_code == 401
        assert (
            _get(vps, "rt-a.test", "/admin/secret.php", auth=("alice", "wrong password")).status_code == 401
        )
        answer = _get(vps, "rt-a.test", "/admin/secret.php", auth=("alice", "correct horse battery"))
        assert (answer.status_code, answer.text) == (200, "secret ran")
        assert _get(vps, "rt-a.test", "/").status_code == 200
        files = _sh(vps, "stat", "-c", "%a %U %G %n", f"/var/lib/chom/htpasswd/{site.unix_user}")
        assert files.startswith("750 root www-data"), files
        listing = _sh(vps, "sh", "-c", f"stat -c '%a %U %G' /var/lib/chom/htpasswd/{site.unix_user}/*")
        assert listing.strip() == "640 root www-data", listing
        assert "correct horse" not in _sh(vps, "sh", "-c", f"cat /var/lib/chom/htpasswd/{site.unix_user}/*")

        # memory_limit through the API: in phpinfo() of that site only.
        php = f"{base}/php-settings"
        _ok(
            client.patch(
                php, {"settings": {"memory_limit": "512M", "upload_max_filesize": "100M"}}, format="json"
            )
        )
        assert _phpinfo_memory_limit(vps, "rt-a.test") == "512M"
        assert _phpinfo_memory_limit(vps, "rt-b.test") == "256M"
        assert "client_max_body_size 100m;" in _sh(vps, "cat", vhost)
        assert other.php_settings == {}

        # A deploy keeps all of it; the same controls applied again change nothing on the VPS.
        _ok(client.post(f"{base}/deploy"))
        assert _phpinfo_memory_limit(vps, "rt-a.test") == "512M"
        assert _get(vps, "rt-a.test", "/admin/secret.php").status_code == 401
        assert _get(vps, "rt-a.test", "/").headers["Content-Security-Policy"] == value
        rid = client.get(f"{base}/redirects").json()["results"][0]["id"]
        removed = _ok(client.delete(f"{base}/redirects/{rid}"))
        assert f"vhost {site.unix_user} written" in "\n".join(e.message for e in removed.log_entries.all())
        assert _get(vps, "rt-a.test", "/old").status_code == 404
        again = _ok(client.patch(php, {"settings": {"max_input_vars": 2000}}, format="json"))
        log = "\n".join(e.message for e in again.log_entries.all())
        assert f"vhost {site.unix_user} unchanged" in log and f"pool {site.unix_user} written" in log

        # Removing the last user opens the prefix again and removes the file.
        uid = client.get(f"{base}/basic-auth").json()["results"][0]["id"]
        _ok(client.delete(f"{base}/basic-auth/{uid}"))
        assert _get(vps, "rt-a.test", "/admin/secret.php").text == "secret ran"
        assert "No such file" in _sh(vps, "ls", f"/var/lib/chom/htpasswd/{site.unix_user}")
    finally:
        server.stop()
