"""Runtime controls in the rendered configs: every value the API accepts is one nginx (the real
binary) reads back as exactly that value, nothing hostile renders at all, basic auth with CHOM's
bcrypt hashes works in the real nginx (PHP under a protected prefix included, the ACME challenge
open), and PHP settings render into a pool php-fpm accepts."""

import base64
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sites import runtime
from sites.configs import VhostSpec, render_pool, render_vhost
from sites.runtime_configs import AuthRealm, RedirectRule, quoted, realm_key, render_headers, render_redirects
from tests.sites.test_configs import NGINX, PHP_FPM, _nginx_t
from tests.support.processes import free_port, wait_for

pytestmark = pytest.mark.real

# Values the API accepts (each is checked through the service's own check first).
ACCEPTED_HEADER_VALUES = [
    "",
    "plain",
    "default-src 'self'; script-src 'self' https://cdn.example.com",
    '<https://example.com/a.css>; rel="preload"; as="style"',
    "back\\slash \\n \\t \\\\ end\\",
    'quote " in the middle "',
    "braces { } ; # semicolons and hashes # ;",
    "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "$"),
    "x" * runtime.MAX_HEADER_VALUE,
]
ACCEPTED_PATHS = ["/", "/old", "/old/", "/a/b/c", "/v1.2/x_y~z@a+b,c=d:e-f", "/" + "a" * 400]
ACCEPTED_TARGETS = [
    "/new",
    "https://example.com",
    "https://example.com/a/b?x=1&y=2#frag",
    "http://[2001:db8::1]:8080/p",
    "https://example.com/%24dollar/it's(ok)*+,;=!~@:",
]


def _spec(**fields) -> VhostSpec:
    return VhostSpec(name="site2", domains=("b.example.com",), php=True, **fields)


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
def test_it_renders_every_accepted_header_value_redirect_and_realm_so_nginx_accepts_it(tmp_path):
    headers = []
    for n, value in enumerate(ACCEPTED_HEADER_VALUES):
        runtime.header_check(f"X-Test-{n}", value)
        headers.append((f"X-Test-{n}", value))
    redirects = []
    for n, path in enumerate(ACCEPTED_PATHS[1:]):
        source = runtime.path_check(path, field="from")
        target = runtime.destination_check(ACCEPTED_TARGETS[n % len(ACCEPTED_TARGETS)], preserve_query=False)
        redirects.append(RedirectRule(f"{source}-{n}", ("exact", "prefix")[n % 2], target, 308, False))
    redirects.append(RedirectRule("/q", "exact", "https://example.com/q", 301, True))
    realms = tuple(AuthRealm(p, realm_key(p)) for p in ("/", "/admin", "/v1.2/x_y~z@a+b,c=d:e-f"))
    spec = _spec(headers=tuple(headers), redirects=tuple(redirects), auth=realms)
    result = _nginx_t(tmp_path, render_vhost(spec))
    assert result.returncode == 0, result.stderr


HOSTILE_VALUES = [
    "a; add_header X-Evil 1",
    "a} server { listen 81; }",
    "a{",
    "line\nbreak",
    "carriage\rreturn",
    "nul\x00byte",
    "tab\there",
    "$request_uri",
    "${host}",
    "caf\u00e9",
    "\u202eright-to-left",
    "del\x7f",
]


@pytest.mark.parametrize(
    "value", [v for v in HOSTILE_VALUES if "$" in v or not v.isprintable() or not v.isascii()]
)
def test_it_refuses_to_render_a_hostile_value_that_bypassed_the_checks(value):
    with pytest.raises(ValueError):
        quoted(value)
    with pytest.raises(ValueError):
        render_headers((("X-Test", value),))
    with pytest.raises(ValueError):
        render_redirects((RedirectRule("/old", "exact", value, 301, False),))
    with pytest.raises(ValueError):
        render_redirects((RedirectRule(value, "exact", "/new", 301, False),))


def test_it_keeps_semicolons_and_braces_inside_one_quoted_parameter():
    line = render_headers((("X-Test", 'a"; } { \\'),))[0]
    assert line == '    add_header "X-Test" "a\\"; } { \\\\" always;'


class Served:
    def __init__(self, port: int):
        self.port = port

    def get(self, path: str, auth: tuple[str, str] | None = None) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Host": "b.example.com"}
        )
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=5) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def serve(tmp_path):
    """Run the rendered vhost in a real nginx on a free port (paths moved under TMP_PATH)."""
    started = []

    def start(spec: VhostSpec, htpasswd: dict[str, str]) -> Served:
        port = free_port()
        vhost = render_vhost(spec)
        for old, new in [
            ("listen 80;", f"listen 127.0.0.1:{port};"),
            ("listen [::]:80;", ""),
            ("/var/log/chom/", f"{tmp_path}/log/"),
            ("/var/www/", f"{tmp_path}/www/"),
            ("/var/lib/chom/", f"{tmp_path}/lib/"),
            ("/run/php/", f"{tmp_path}/"),
        ]:
            vhost = vhost.replace(old, new)
        public = tmp_path / "www/site2/current/public"
        for directory in (public / "admin", tmp_path / "log/site2", tmp_path / "lib/acme/site2/.well-known"):
            directory.mkdir(parents=True, exist_ok=True)
        (public / "index.html").write_text("home")
        (public / "admin/index.html").write_text("admin page")
        (public / "admin/secret.php").write_text("<?php echo 'php ran';")
        challenge = tmp_path / "lib/acme/site2/.well-known/acme-challenge"
        challenge.mkdir(exist_ok=True)
        (challenge / "token").write_text("challenge")
        auth_dir = tmp_path / "lib/htpasswd/site2"
        auth_dir.mkdir(parents=True, exist_ok=True)
        for key, content in htpasswd.items():
            (auth_dir / key).write_text(content)
        result = _nginx_t(tmp_path, vhost)
        assert result.returncode == 0, result.stderr
        conf = tmp_path / "nginx.conf"
        conf.write_text(conf.read_text().replace("events {}", "daemon off;\nuser root root;\nevents {}"))
        proc = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "logs/error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        served = Served(port)
        wait_for(lambda: _answers(served), timeout=10, what="nginx answering")
        return served

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(served: Served) -> bool:
    try:
        served.get("/.well-known/acme-challenge/token")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
def test_it_serves_headers_byte_for_byte_and_redirects_as_configured(serve):
    headers = tuple((f"X-Test-{n}", v) for n, v in enumerate(ACCEPTED_HEADER_VALUES[1:-1]))
    redirects = (
        RedirectRule("/old", "exact", "https://example.com/new", 308, True),
        RedirectRule("/docs", "prefix", "/manual", 302, False),
    )
    served = serve(_spec(headers=headers, redirects=redirects), {})
    status, answer, _ = served.get("/")
    assert status == 200
    for name, value in headers:
        assert answer[name] == value.strip(), name  # HTTP drops surrounding spaces
    assert served.get("/old?a=1&b=%0d%0a")[:2][0] == 308
    assert served.get("/old?a=1&b=%0d%0a")[1]["Location"] == "https://example.com/new?a=1&b=%0d%0a"
    assert served.get("/old")[1]["Location"] == "https://example.com/new"
    for path in ("/docs", "/docs/", "/docs/deep/page?x=1"):
        status, answer, _ = served.get(path)
        assert (status, answer["Location"]) == (302, f"http://b.example.com:{served.port}/manual"), path
    assert served.get("/docsx")[0] == 404  # a prefix is a path segment, not a string prefix
    assert served.get("/old")[1]["X-Test-0"] == headers[0][1]  # redirects carry the headers too


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
def test_it_protects_a_prefix_php_included_with_chom_bcrypt_hashes_and_leaves_acme_open(serve):
    admin = runtime.password_hash("correct horse battery")
    assert admin.startswith("$2b$")
    realms = (AuthRealm("/admin", realm_key("/admin")),)
    served = serve(_spec(auth=realms), {realm_key("/admin"): f"alice:{admin}\n"})
    assert served.get("/")[0] == 200  # outside the prefix
    for path in ("/admin", "/admin/", "/admin/index.html", "/admin/secret.php", "//admin/secret.php",
                 "/%61dmin/secret.php", "/x/../admin/secret.php"):  # fmt: skip
        status, answer, _ = served.get(path)
        assert status == 401, path
        assert answer["WWW-Authenticate"] == 'Basic realm="Restricted"'
    assert served.get("/admin/", ("alice", "wrong password"))[0] == 401
    assert served.get("/admin/", ("alice", "correct horse battery"))[:3:2] == (200, b"admin page")
    # Past the auth the PHP location takes it (no php-fpm here: 502), never the static file.
    status, _, body = served.get("/admin/secret.php", ("alice", "correct horse battery"))
    assert status == 502 and b"php ran" not in body and b"<?php" not in body
    assert served.get("/.well-known/acme-challenge/token")[:3:2] == (200, b"challenge")


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
def test_it_protects_the_whole_site_and_the_longest_prefix_picks_the_realm(serve):
    site_user, admin_user = (
        runtime.password_hash("site password 1"),
        runtime.password_hash("admin password 2"),
    )
    realms = (AuthRealm("/", realm_key("/")), AuthRealm("/admin", realm_key("/admin")))
    served = serve(
        _spec(auth=realms),
        {realm_key("/"): f"visitor:{site_user}\n", realm_key("/admin"): f"boss:{admin_user}\n"},
    )
    assert served.get("/")[0] == 401
    assert served.get("/", ("visitor", "site password 1"))[0] == 200
    assert served.get("/admin/", ("visitor", "site password 1"))[0] == 401
    assert served.get("/admin/", ("boss", "admin password 2"))[0] == 200
    assert served.get("/.well-known/acme-challenge/token")[0] == 200


@pytest.mark.skipif(not Path(PHP_FPM).exists(), reason="php-fpm8.2 is not installed")
def test_it_renders_php_settings_into_a_pool_php_fpm_accepts(tmp_path):
    settings = {
        "memory_limit": "512M",
        "upload_max_filesize": "100M",
        "post_max_size": "120M",
        "max_execution_time": 300,
        "max_input_vars": 5000,
    }
    pool = render_pool(name="site8", php_version="8.2", php_settings=settings)
    (tmp_path / "pool.conf").write_text(pool.replace("/run/php/", f"{tmp_path}/"))
    (tmp_path / "fpm.conf").write_text(
        f"[global]\npid = {tmp_path}/fpm.pid\nerror_log = {tmp_path}/fpm.log\n"
        f"include = {tmp_path}/pool.conf\n"
    )
    subprocess.run(["useradd", "--system", "--no-create-home", "site8"], capture_output=True)
    try:
        result = subprocess.run(
            [PHP_FPM, "-t", "-y", str(tmp_path / "fpm.conf")], capture_output=True, text=True, timeout=30
        )
    finally:
        subprocess.run(["userdel", "site8"], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert "php_admin_value[memory_limit] = 512M" in pool
    assert pool.count("memory_limit") == 1
    assert "php_admin_value[max_execution_time] = 300" in pool
    vhost = render_vhost(_spec(client_max_body_mb=120, fastcgi_read_timeout=310))
    assert "client_max_body_size 120m;" in vhost and "fastcgi_read_timeout 310s;" in vhost


def test_it_renders_chom_defaults_when_a_site_sets_nothing():
    assert render_pool(name="site9", php_version="8.2").endswith("php_admin_value[memory_limit] = 256M\n")
    vhost = render_vhost(_spec())
    assert "client_max_body_size 64m;" in vhost and "fastcgi_read_timeout 60s;" in vhost
    assert "auth_basic" not in vhost and "map " not in vhost


@pytest.mark.parametrize(
    "settings", [{"memory_limit": "1G; evil"}, {"open_basedir": "/"}, {"memory_limit": "-1"}]
)
def test_it_refuses_to_render_php_settings_outside_the_allow_list(settings):
    with pytest.raises(ValueError):
        render_pool(name="site9", php_version="8.2", php_settings=settings)
