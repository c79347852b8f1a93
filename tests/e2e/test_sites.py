"""Sites end to end: created through the API, served by real nginx + php-fpm + MariaDB in a test VPS."""

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from django.test import override_settings

from chom.models import Operation
from chom.operations import operation_execute
from fleet.remote.agent_client import Agent
from fleet.remote.commands import Command
from fleet.services import transport_for
from sites.models import Site
from tests.support.git import GitServer, git_repo
from tests.support.laravel import laravel_repo, migration, queue_job
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e


def _run(op_id) -> Operation:
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    assert op.status == "succeeded", f"{op.error}\n" + "\n".join(e.message for e in op.log_entries.all())
    return op


def _create(persona, **body) -> tuple[dict, Operation]:
    response = persona.client().post("/api/v1/sites", body, format="json")
    assert response.status_code == 202, response.content
    return response.json(), _run(response.json()["operation"]["id"])


def _post(persona, url) -> Operation:
    response = persona.client().post(url)
    assert response.status_code == 202, response.content
    operation_execute(operation_id=response.json()["operation"]["id"])
    return Operation.objects.get(id=response.json()["operation"]["id"])


def _get(vps, domain, path="/"):
    return requests.get(
        f"http://{vps.ip_address}{path}", headers={"Host": domain}, timeout=5, allow_redirects=False
    )


def _sh(vps, *argv) -> str:
    with transport_for(vps) as transport:
        result = transport.run(Command.of(*argv))
    return result.stdout + result.stderr


def test_it_serves_a_static_placeholder_and_isolates_php_sites(alice, make_vps):
    vps = make_vps("e2e-sites")
    started = time.monotonic()
    static, _ = _create(alice, domain="static.test", type="static")
    static_seconds = time.monotonic() - started
    page = _get(vps, "static.test")
    assert page.status_code == 200 and "<h1>static.test</h1>" in page.text

    started = time.monotonic()
    php_a, _ = _create(alice, domain="a.php.test", type="php")
    php_seconds = time.monotonic() - started
    php_b, _ = _create(alice, domain="b.php.test", type="php")
    a, b = Site.objects.get(pk=php_a["id"]), Site.objects.get(pk=php_b["id"])
    assert _get(vps, "a.php.test").status_code == 200
    print(f"\nstatic site API-to-serving {static_seconds:.2f}s, php site with database {php_seconds:.2f}s")

    probe = (
        "<?php header('Content-Type: text/plain');"
        "echo posix_getpwuid(posix_geteuid())['name'], \"\\n\";"
        f"$f = '/var/www/{b.unix_user}/current/public/index.html';"
        "echo @file_get_contents($f) === false ? 'denied' : 'READ', \"\\n\";"
        f"echo @scandir('/var/www/{b.unix_user}') === false ? 'denied' : 'LISTED', \"\\n\";"
    )
    with transport_for(vps) as transport:
        Agent(transport).call(
            "file-write",
            {"path": f"/var/www/{a.unix_user}/current/public/whoami.php", "content": probe,
             "owner": a.unix_user, "group": "www-data", "mode": "0640"},
        )  # fmt: skip
    lines = _get(vps, "a.php.test", "/whoami.php").text.split()
    assert lines == [a.unix_user, "denied", "denied"]
    # Not only open_basedir: the operating system refuses too.
    out = _sh(vps, "runuser", "-u", a.unix_user, "--", "ls", f"/var/www/{b.unix_user}")
    assert "Permission denied" in out

    # Site A's files may be symlinks to B's files or to /etc (B's tree is readable by nginx's
    # group): nginx follows only links whose owner owns the target too.
    public = f"/var/www/{a.unix_user}/current/public"
    _sh(
        vps, "runuser", "-u", a.unix_user, "--", "sh", "-c",
        'ln -s "$2" "$1/b.txt" && ln -s /etc/passwd "$1/passwd.txt" && echo mine > "$1/own.txt"'
        ' && ln -s "$1/own.txt" "$1/alias.txt"',
        "sh", public, f"/var/www/{b.unix_user}/current/public/index.html",
    )  # fmt: skip
    for leak in ("/b.txt", "/passwd.txt"):
        response = _get(vps, "a.php.test", leak)
        # 403 from a direct file, 404 through try_files: refused either way, nothing shown.
        assert response.status_code in (403, 404), (leak, response.status_code)
        assert "root:" not in response.text and "b.php.test" not in response.text
    assert _get(vps, "a.php.test", "/alias.txt").text == "mine\n"

    # Logs: a site reads its own, never a co-tenant's (request URLs carry tokens).
    own = _sh(vps, "runuser", "-u", a.unix_user, "--", "cat", f"/var/log/chom/{a.unix_user}/access.log")
    assert "GET /alias.txt" in own
    theirs = _sh(vps, "runuser", "-u", a.unix_user, "--", "cat", f"/var/log/chom/{b.unix_user}/access.log")
    assert "Permission denied" in theirs


def test_it_deploys_laravel_from_git_twice_without_errors_and_rolls_back(
    alice, make_vps, fleet_network, tmp_path
):
    network, _, _ = fleet_network
    vps = make_vps("e2e-laravel")
    repo = tmp_path / "app"
    first_commit = laravel_repo(repo, "1", "v1")  # a real Laravel 8 app (tests/support/laravel.py)
    (tmp_path / "srv").mkdir()
    server = GitServer(tmp_path / "srv", network.gateway)
    url = server.publish(repo, "app.git")
    try:
        body, op = _create(
            alice, domain="app.test", type="laravel", repository={"url": url, "branch": "main"}
        )
        assert _get(vps, "app.test").text == "version 1 greeting=hello key=ok"
        assert op.result["commit"] == first_commit
        site = Site.objects.get(pk=body["id"])
        first_release = site.current_release

        second_commit = laravel_repo(repo, "2", "v2", migration("notes"))
        server.publish(repo, "app.git")

        errors, seen, stop = [], set(), threading.Event()

        def hammer():
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    response = _get(vps, "app.test")
                    seen.add(response.text)
                    if response.status_code != 200:
                        errors.append(response.status_code)
                except requests.RequestException as exc:
                    errors.append(str(exc))

        loop = threading.Thread(target=hammer)
        loop.start()
        try:
            op = _post(alice, f"/api/v1/sites/{site.pk}/deploy")
        finally:
            stop.set()
            loop.join(timeout=10)
        assert op.status == "succeeded", op.error
        assert op.result["commit"] == second_commit
        assert errors == [] and seen >= {"version 2 greeting=hello key=ok"}
        assert _get(vps, "app.test").text == "version 2 greeting=hello key=ok"
        # migrate ran in both releases: the first batch once, the second only the new migration.
        query = f"SELECT batch, COUNT(*) FROM {site.db_name}.migrations GROUP BY batch ORDER BY batch"
        assert _sh(vps, "mariadb", "-N", "-e", query).split() == ["1", "4", "2", "1"]
        queue_unit = _sh(vps, "cat", f"/etc/systemd/system/chom-{site.unix_user}-worker-queue@.service")
        assert f"User={site.unix_user}" in queue_unit
        assert "chom-" not in _sh(vps, "ls", "/etc/supervisor/conf.d/")  # no supervisor program any more
        # The scheduler is an ordinary cron job: a systemd timer, no /etc/cron.d file.
        scheduler = site.cron_jobs.get(command=["php", "artisan", "schedule:run"])
        timer = f"chom-{site.unix_user}-cron-{scheduler.pk}.timer"
        assert _sh(vps, "systemctl", "is-active", timer).strip() == "active"
        assert "No such file" in _sh(vps, "cat", f"/etc/cron.d/chom-{site.unix_user}")

        op = _post(alice, f"/api/v1/sites/{site.pk}/rollback")
        assert op.status == "succeeded", op.error
        assert _get(vps, "app.test").text == "version 1 greeting=hello key=ok"
        site.refresh_from_db()
        assert site.current_release == first_release

        # A broken release (its build fails) leaves the current one serving.
        git_repo(repo, {"public/index.php": "<?php echo 'broken' "}, "broken")  # syntax error: php -l fails
        server.publish(repo, "app.git")
        op = _post(alice, f"/api/v1/sites/{site.pk}/deploy")
        assert op.status == "failed"
        assert "release-create failed at php-lint" in op.error
        assert _get(vps, "app.test").text == "version 1 greeting=hello key=ok"
        site.refresh_from_db()
        assert (site.status, site.current_release) == ("active", first_release)
        assert "php-lint" in site.status_reason
        broken = site.releases.get(name=op.params["release"])
        assert broken.status == "failed" and broken.error.startswith("failed during step 'release ")
        assert "php-lint" in broken.error

        # A release that builds but does not answer is switched back automatically: its page
        # calls an undefined function, which Laravel's exception handler turns into a 500.
        page = {"resources/views/page.blade.php": "{{ undefined_function() }}"}
        laravel_repo(repo, "500s", "500s", page)
        server.publish(repo, "app.git")
        op = _post(alice, f"/api/v1/sites/{site.pk}/deploy")
        assert op.status == "failed"
        assert f"switched back to release {first_release}" in op.error
        assert _get(vps, "app.test").text == "version 1 greeting=hello key=ok"
        assert site.releases.get(name=op.params["release"]).status == "failed"
        # The queue worker, restarted into the failed release, followed the switch back.
        assert queue_job(vps, site)[0] == ["1", "1"]

        # The next success clears the reason the failures left on the site.
        laravel_repo(repo, "3", "v3")
        server.publish(repo, "app.git")
        assert _post(alice, f"/api/v1/sites/{site.pk}/deploy").status == "succeeded"
        site.refresh_from_db()
        assert (site.status, site.status_reason) == ("active", "")
        assert _get(vps, "app.test").text == "version 3 greeting=hello key=ok"
    finally:
        server.stop()


def _https_get(ip: str, domain: str, root_pem: str | None = None) -> tuple[str, dict]:
    """GET / over TLS with SNI = DOMAIN; verified against ROOT_PEM when given."""
    context = ssl.create_default_context(cadata=root_pem) if root_pem else ssl.create_default_context()
    if not root_pem:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((ip, 443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=domain) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data.decode(errors="replace"), tls.getpeercert()


def _visit(vps, domain: str) -> list[tuple[str, int, str]]:
    """What a browser gets for http://DOMAIN/: each hop as (url, status, body of the last one)."""
    from sites import probe

    hops = probe.visit(vps.ip_address, domain)
    last = hops[-1]
    body = _https_get(vps.ip_address, domain)[0] if last.url.startswith("https") else _get(vps, domain).text
    return [(h.url, h.status, body if h is last else "") for h in hops]


def test_it_suspends_a_tls_site_for_visitors_on_both_schemes_and_keeps_it_through_renewal(
    alice, staff, make_vps, pebble
):
    vps = make_vps("e2e-sslsusp")
    acme = {
        "ACME_DIRECTORY_URL": pebble.directory_url,
        "ACME_CA_BUNDLE_FILE": str(pebble.ca_bundle),
        "LOCAL_DNS_MANAGEMENT_URL": pebble.dns_management_url,
    }
    with override_settings(**acme):
        body, _ = _create(alice, domain="held.test", type="php")
        assert _post(alice, f"/api/v1/sites/{body['id']}/ssl").status == "succeeded"
    site = Site.objects.get(pk=body["id"])

    op = _post(staff, f"/api/v1/sites/{site.pk}/suspend")
    assert op.status == "succeeded", op.error
    site.refresh_from_db()
    assert (site.status, site.status_reason) == ("suspended", "")
    hops = _visit(vps, "held.test")
    assert [(url, code) for url, code, _ in hops] == [("http://held.test/", 301), ("https://held.test/", 503)]
    assert "suspended" in hops[-1][2]

    # The daily renewal re-renders the vhost: the suspension stays.
    from django.utils import timezone

    from sites.tls import sites_renew_certificates

    Site.objects.filter(pk=site.pk).update(ssl_expires_at=timezone.now())
    with override_settings(**acme):
        (renewal,) = sites_renew_certificates()
        operation_execute(operation_id=renewal.id)
    renewal.refresh_from_db()
    assert renewal.status == "succeeded", renewal.error
    assert _visit(vps, "held.test")[-1][1] == 503

    # A failure's reason is cleared by the next success.
    Site.objects.filter(pk=site.pk).update(status_reason="an earlier failure")
    op = _post(staff, f"/api/v1/sites/{site.pk}/unsuspend")
    assert op.status == "succeeded", op.error
    site.refresh_from_db()
    assert (site.status, site.status_reason) == ("active", "")
    hops = _visit(vps, "held.test")
    assert [(url, code) for url, code, _ in hops] == [("http://held.test/", 301), ("https://held.test/", 200)]


def test_it_issues_a_certificate_and_serves_https_verified_against_the_ca(alice, make_vps, pebble):
    vps = make_vps("e2e-ssl")
    with override_settings(
        ACME_DIRECTORY_URL=pebble.directory_url,
        ACME_CA_BUNDLE_FILE=str(pebble.ca_bundle),
        LOCAL_DNS_MANAGEMENT_URL=pebble.dns_management_url,
    ):
        body, _ = _create(alice, domain="secure.test", type="static", aliases=["www.secure.test"])
        started = time.monotonic()
        op = _post(alice, f"/api/v1/sites/{body['id']}/ssl")
        seconds = time.monotonic() - started
    assert op.status == "succeeded", op.error + "\n" + "\n".join(e.message for e in op.log_entries.all())
    print(f"\ncertificate from the local ACME CA in {seconds:.2f}s")
    site = Site.objects.get(pk=body["id"])
    assert site.ssl_status == "active" and site.ssl_expires_at is not None
    response, cert = _https_get(vps.ip_address, "www.secure.test", pebble.issuing_root())
    assert "200 OK" in response.splitlines()[0] and "<h1>secure.test</h1>" in response
    assert ("DNS", "www.secure.test") in cert["subjectAltName"]
    redirect = _get(vps, "secure.test")
    assert redirect.status_code == 301 and redirect.headers["Location"] == "https://secure.test/"
    detail = alice.client().get(f"/api/v1/sites/{site.pk}").json()
    assert detail["ssl"]["status"] == "active" and detail["ssl"]["expires_at"]

    # A new certificate (an alias was added) that cannot be issued: the old one keeps serving
    # and an alert is raised.
    Site.objects.filter(pk=site.pk).update(aliases=["www.secure.test", "new.secure.test"])
    with override_settings(
        ACME_DIRECTORY_URL=f"https://{pebble.directory_url.split('/')[2].split(':')[0]}:1/dir",
        ACME_CA_BUNDLE_FILE=str(pebble.ca_bundle),
        LOCAL_DNS_MANAGEMENT_URL=pebble.dns_management_url,
    ):
        op = _post(alice, f"/api/v1/sites/{site.pk}/ssl")
    assert op.status == "failed" and "cert-issue failed at certbot" in op.error, op.error
    from observability.models import Alert

    assert Alert.objects.get(name="ssl_failed", status="firing").labels == {"site": "secure.test"}
    site.refresh_from_db()
    assert site.ssl_status == "active"
    _, still = _https_get(vps.ip_address, "secure.test", pebble.issuing_root())
    assert still["serialNumber"] == cert["serialNumber"]


def test_it_suspends_unsuspends_and_deletes_leaving_nothing_behind(alice, staff, make_vps):
    vps = make_vps("e2e-lifecycle")
    body, _ = _create(alice, domain="life.test", type="php")
    site = Site.objects.get(pk=body["id"])
    assert _post(staff, f"/api/v1/sites/{site.pk}/suspend").status == "succeeded"
    page = _get(vps, "life.test")
    assert page.status_code == 503 and "suspended" in page.text
    assert "index.html" in _sh(vps, "ls", f"/var/www/{site.unix_user}/current/public")  # nothing deleted
    assert _post(staff, f"/api/v1/sites/{site.pk}/unsuspend").status == "succeeded"
    assert _get(vps, "life.test").status_code == 200

    response = alice.client().delete(f"/api/v1/sites/{site.pk}")
    assert response.status_code == 202
    _run(response.json()["operation"]["id"])
    site.refresh_from_db()
    assert site.status == "deleted"
    with transport_for(vps) as transport:
        facts = Agent(transport).call("facts").data
    assert site.unix_user not in facts["sites"]
    assert _sh(vps, "id", site.unix_user).count("no such user") == 1
    assert "No such file" in _sh(vps, "ls", f"/var/www/{site.unix_user}")
    databases = _sh(vps, "mariadb", "-N", "-e", "SHOW DATABASES")
    assert site.db_name not in databases.split()
    # Only the server's default page is left for that name (reload lands ~30 ms after the call).
    wait_for(lambda: "X-Chom-Site" not in _get(vps, "life.test").headers, timeout=5, what="vhost gone")


WORDPRESS_SOURCE = Path("/usr/share/wordpress")


@pytest.fixture(scope="session")
def wordpress_archive(tmp_path_factory, fleet_network):
    """A WordPress release archive built from Debian's `wordpress` package (no internet here),
    served over HTTP on the fleet bridge like a download mirror."""
    import functools
    import hashlib
    import http.server
    import tarfile

    if not (WORDPRESS_SOURCE / "wp-settings.php").exists():
        pytest.skip("Debian's wordpress package is not installed (.ci/run installs it)")
    folder = tmp_path_factory.mktemp("wordpress")
    archive = folder / "wordpress.tar.gz"
    skip = {"wp-config.php", ".htaccess"}
    with tarfile.open(archive, "w:gz", dereference=True) as tar:
        tar.add(
            WORDPRESS_SOURCE,
            arcname="wordpress",
            filter=lambda info: None if Path(info.name).name in skip else info,
        )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    network, _, _ = fleet_network
    server = http.server.ThreadingHTTPServer((network.gateway, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://{network.gateway}:{server.server_address[1]}/wordpress.tar.gz"
    yield url, hashlib.sha256(archive.read_bytes()).hexdigest()
    server.shutdown()


WORDPRESS_PACKAGES = ("wordpress", "wordpress-theme-twentytwentythree")
APT_LISTS = Path("/var/lib/apt/lists")


class DebianMirror:
    """A Debian mirror on the fleet bridge holding Debian's own signed index of bookworm main
    (this host's InRelease and Packages, as apt verified them) and the WordPress .debs that index
    names: what apt on a test VPS (no internet) installs from, checking every signature and hash
    exactly as from a public mirror."""

    def __init__(self, root: Path, url: str, debs: dict[str, Path]):
        self.root, self.url, self.debs = root, url, debs

    @contextlib.contextmanager
    def tampered(self, package: str):
        """The package's .deb with one byte changed (same size): only its hash can tell."""
        deb = self.debs[package]
        original = deb.read_bytes()
        middle = len(original) // 2
        deb.write_bytes(original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :])
        try:
            yield
        finally:
            deb.write_bytes(original)


def _stanzas(packages_text: str, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    found = {}
    for stanza in packages_text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Package") in names:
            found[fields["Package"]] = fields
    return found


def _fetch_deb(fields: dict[str, str], dest: Path) -> None:
    """The exact .deb the index names: apt's cache on this host, else `apt-get download`."""
    import hashlib

    cached = Path("/var/cache/apt/archives") / Path(fields["Filename"]).name
    if cached.exists() and hashlib.sha256(cached.read_bytes()).hexdigest() == fields["SHA256"]:
        dest.write_bytes(cached.read_bytes())
        return
    subprocess.run(
        ["apt-get", "download", "-q", f"{fields['Package']}={fields['Version']}"],
        cwd=dest.parent, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    next(dest.parent.glob(f"{fields['Package']}_*.deb")).rename(dest)


@pytest.fixture(scope="session")
def debian_mirror(tmp_path_factory, fleet_network):
    import functools
    import hashlib
    import http.server

    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    inrelease = next(APT_LISTS.glob("*_dists_bookworm_InRelease"), None)
    prefix = inrelease.name.removesuffix("InRelease") if inrelease else ""
    indexes = (
        APT_LISTS / f"{prefix}main_binary-{arch}_Packages{ext}" for ext in ("", ".lz4", ".zst", ".gz", ".xz")
    )
    index = next((path for path in indexes if path.exists()), None)
    if inrelease is None or index is None:
        pytest.skip("this host has no apt index of Debian bookworm main (.ci/run runs apt-get update)")
    root = tmp_path_factory.mktemp("mirror") / "debian"
    dists = root / "dists" / "bookworm"
    (dists / "main" / f"binary-{arch}" / "by-hash" / "SHA256").mkdir(parents=True)
    (dists / "InRelease").write_bytes(inrelease.read_bytes())
    packages = dists / "main" / f"binary-{arch}" / "Packages"
    # apt keeps its lists recompressed (lz4); the signed InRelease lists the plain file's hash.
    with packages.open("wb") as out:
        subprocess.run(
            ["/usr/lib/apt/apt-helper", "cat-file", str(index)], stdout=out, check=True, timeout=120
        )
    digest = hashlib.sha256(packages.read_bytes()).hexdigest()
    assert digest in inrelease.read_text(), "the decompressed index must be the one Debian signed"
    (packages.parent / "by-hash" / "SHA256" / digest).hardlink_to(packages)
    debs = {}
    for name, fields in _stanzas(packages.read_text(), WORDPRESS_PACKAGES).items():
        debs[name] = root / fields["Filename"]
        debs[name].parent.mkdir(parents=True, exist_ok=True)
        _fetch_deb(fields, debs[name])
    assert sorted(debs) == sorted(WORDPRESS_PACKAGES), "bookworm main must carry WordPress"
    network, _, _ = fleet_network
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((network.gateway, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield DebianMirror(root, f"http://{network.gateway}:{server.server_address[1]}", debs)
    server.shutdown()
    server.server_close()


def _use_mirror(vps, url: str) -> None:
    """Point the VPS's apt at the mirror only (no translations: the mirror serves none)."""
    sources = (
        f"Types: deb\nURIs: {url}\nSuites: bookworm\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    _sh(vps, "sh", "-c", 'printf %s "$1" > /etc/apt/sources.list.d/debian.sources', "sh", sources)
    _sh(vps, "sh", "-c", "echo 'Acquire::Languages \"none\";' > /etc/apt/apt.conf.d/99chom-test-mirror")


def _create_wordpress(persona, domain: str) -> tuple[dict, Operation]:
    """Create a WordPress site and check it went live only once installed: before, the first
    visitor could claim /wp-admin/install.php."""
    response = persona.client().post("/api/v1/sites", {"domain": domain, "type": "wordpress"}, format="json")
    assert response.status_code == 202, response.content
    op = _run(response.json()["operation"]["id"])
    steps = [e.message for e in op.log_entries.all() if e.message.startswith("step: ")]
    assert steps.index("step: site-exec") < steps.index("step: nginx vhost"), steps
    return response.json()["credentials"], op


def _assert_wordpress_serves(vps, domain: str, credentials: dict) -> None:
    front = _get(vps, domain)
    assert front.status_code == 200
    assert domain in front.text and "wp-content/themes/twentytwentythree" in front.text
    login = requests.post(
        f"http://{vps.ip_address}/wp-login.php",
        headers={"Host": domain, "Cookie": "wordpress_test_cookie=WP%20Cookie%20check"},
        data={"log": credentials["admin_user"], "pwd": credentials["admin_password"], "testcookie": "1"},
        allow_redirects=False,
        timeout=10,
    )
    assert login.status_code == 302 and "wp-admin" in login.headers["Location"]


def test_it_installs_wordpress_from_the_vps_distro_package_with_no_settings(alice, make_vps):
    vps = make_vps("e2e-wpdeb")
    with override_settings(WORDPRESS_ARCHIVE_URL="", WORDPRESS_ARCHIVE_SHA256=""):
        credentials, op = _create_wordpress(alice, "deb.blog.test")
    _assert_wordpress_serves(vps, "deb.blog.test", credentials)
    site = Site.objects.get(domain="deb.blog.test")
    version = _sh(vps, "dpkg-query", "-W", "-f=${Version}", "wordpress").strip()
    assert site.releases.get(name=site.current_release).commit == f"deb:wordpress={version}"
    # A self-contained release: Debian's links (to /etc/wordpress, /usr/share/javascript, the CA
    # bundle) became the site's own files, so nginx (disable_symlinks if_not_owner) serves them;
    # the only links left stay inside the site's home.
    release = f"/var/www/{site.unix_user}/releases/{site.current_release}"
    links = _sh(vps, "find", release, "-type", "l", "-printf", "%P -> %l\n").splitlines()
    assert sorted(links) == ["public -> .", "wp-content/uploads -> ../../../shared/wp-content/uploads"]
    assert _sh(vps, "stat", "-c", "%U:%G", f"{release}/wp-includes/js/underscore.min.js").strip() == (
        f"{site.unix_user}:www-data"
    )
    script = _get(vps, "deb.blog.test", "/wp-includes/js/underscore.min.js")
    assert script.status_code == 200 and "underscore" in script.text.lower()
    assert "/etc/wordpress" not in _sh(vps, "cat", f"{release}/wp-config.php")

    # A redeploy copies the installed package again: a new release, no apt run.
    op = _post(alice, f"/api/v1/sites/{site.pk}/deploy")
    assert op.status == "succeeded", op.error
    log = "\n".join(e.message for e in op.log_entries.all())
    assert "apt-get" not in log and "installed php" not in log
    _assert_wordpress_serves(vps, "deb.blog.test", credentials)


def test_it_installs_the_wordpress_package_with_apt_and_refuses_a_tampered_one(
    alice, make_vps, debian_mirror
):
    vps = make_vps("e2e-wpapt")
    _sh(vps, "dpkg", "--purge", *WORDPRESS_PACKAGES)
    _use_mirror(vps, debian_mirror.url)
    with override_settings(WORDPRESS_ARCHIVE_URL="", WORDPRESS_ARCHIVE_SHA256=""):
        credentials, op = _create_wordpress(alice, "apt.blog.test")
    log = "\n".join(e.message for e in op.log_entries.all())
    assert "installed wordpress wordpress-theme-twentytwentythree" in log
    _assert_wordpress_serves(vps, "apt.blog.test", credentials)

    # apt checks each .deb against the signed index: a changed byte fails the deploy, and the
    # release already live keeps serving.
    _sh(vps, "dpkg", "--purge", *WORDPRESS_PACKAGES)
    _sh(vps, "apt-get", "clean")
    site = Site.objects.get(domain="apt.blog.test")
    with debian_mirror.tampered("wordpress"):
        op = _post(alice, f"/api/v1/sites/{site.pk}/deploy")
    assert op.status == "failed"
    assert (
        "installing php wordpress wordpress-theme-twentytwentythree from the distribution failed" in op.error
    )
    assert "Hash Sum mismatch" in op.error, op.error
    _assert_wordpress_serves(vps, "apt.blog.test", credentials)


def test_it_installs_wordpress_from_a_verified_archive_and_serves_its_front_page(
    alice, make_vps, wordpress_archive
):
    url, sha256 = wordpress_archive
    vps = make_vps("e2e-wp")
    with override_settings(WORDPRESS_ARCHIVE_URL=url, WORDPRESS_ARCHIVE_SHA256=sha256):
        credentials, op = _create_wordpress(alice, "blog.test")
    assert "downloaded " + url in "\n".join(e.message for e in op.log_entries.all())
    _assert_wordpress_serves(vps, "blog.test", credentials)

    with override_settings(WORDPRESS_ARCHIVE_URL=url, WORDPRESS_ARCHIVE_SHA256="0" * 64):
        site = Site.objects.get(domain="blog.test")
        op = _post(alice, f"/api/v1/sites/{site.pk}/deploy")
    assert op.status == "failed" and "sha256" in op.error.lower()
    assert _get(vps, "blog.test").status_code == 200
