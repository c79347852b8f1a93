"""The agent's site-deployment primitives: layout, releases, activation, certificates, removal.

Real binaries throughout: useradd/setpriv for the site user, git, php, nginx (workers as
www-data, serving ROOT/var/www/NAME/current/public), certbot against pebble + challtestsrv.
The temp root lives in a world-traversable directory because the site user and nginx's workers
must reach it (pytest's own tmp directories are 0700 root).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import ssl
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import NGINX, Agent, free_port, make_agent, recorder, require, stop, wait_for

pytestmark = pytest.mark.real  # real nginx/php-fpm/MariaDB/PostgreSQL/promtool (tests/support/real.py)

SITE = "site1"
R = [f"20261127T0415{i:02d}-ab12cd" for i in range(40)]  # release ids, oldest first
PHP = "/usr/bin/php"
GIT = "/usr/bin/git"


def require_site_tools() -> None:
    for binary in ("/usr/sbin/useradd", "/usr/bin/setpriv", GIT, PHP):
        require(binary)
    help_text = subprocess.run(["useradd", "--help"], capture_output=True, text=True, timeout=30).stdout
    if "--prefix" not in help_text:
        pytest.skip("useradd has no --prefix on this host")


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="chom-sites-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(base: Path) -> Agent:
    require_site_tools()
    agent = make_agent(base)
    agent.env["VPSMANAGER_SUPERVISORCTL"] = agent.fake(
        "supervisorctl", recorder(agent.fakes / "supervisorctl.calls", 0)
    )
    return agent


@pytest.fixture
def site(agent: Agent) -> dict[str, Any]:
    return agent.ok("site-ensure", {"name": SITE})["data"]


def placeholder(release: str, html: str | None = None, **extra: Any) -> dict[str, Any]:
    source = {"type": "placeholder", "html": html if html is not None else f"release {release}"}
    return {"name": SITE, "release": release, "source": source, **extra}


def mode_owner(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def make_repo(base: Path, owner: int, files: dict[str, str]) -> tuple[Path, str]:
    """A real git repository owned by the site user (git refuses other owners' repositories)."""
    repo = base / "repo"
    repo.mkdir()
    for rel, content in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(content)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    for argv in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "first"]):
        subprocess.run([GIT, *argv], cwd=repo, env=env, check=True, timeout=30)
    sha = subprocess.run(
        [GIT, "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, owner, owner)
    return repo, sha


# --------------------------------------------------------------------------- site-ensure


def test_site_ensure_creates_the_user_and_layout_and_a_second_call_changes_nothing(agent: Agent) -> None:
    first = agent.ok("site-ensure", {"name": SITE})
    data = first["data"]
    uid, gid = data["uid"], data["gid"]
    home = agent.path("/var/www/site1")

    assert first["changed"] is True
    assert data["home"] == "/var/www/site1" and data["docroot"] == "/var/www/site1/current/public"
    assert mode_owner(home) == (0o2750, uid, 33)
    assert mode_owner(home / "releases") == (0o2750, uid, 33)
    assert mode_owner(home / "shared") == (0o2750, uid, 33)
    assert mode_owner(home / "acme") == (0o2750, 0, 33)
    assert mode_owner(home / "tmp") == (0o700, uid, gid)
    assert mode_owner(agent.path("/var/log/chom/site1")) == (0o755, 0, 0)
    entry = agent.path("/etc/passwd").read_text().splitlines()[-1]
    assert entry.endswith(":CHOM managed:/var/www/site1:/usr/sbin/nologin")

    second = agent.ok("site-ensure", {"name": SITE})
    assert (second["changed"], second["data"]) == (False, data)


def test_site_ensure_repairs_drifted_modes(agent: Agent, site: dict[str, Any]) -> None:
    agent.path("/var/www/site1/shared").chmod(0o777)
    out = agent.ok("site-ensure", {"name": SITE})
    assert out["changed"] is True
    assert mode_owner(agent.path("/var/www/site1/shared"))[0] == 0o2750


def test_site_ensure_refuses_an_account_chom_does_not_manage(agent: Agent) -> None:
    result = agent("site-ensure", {"name": "www-data"})
    assert result.error["code"] == "user_conflict"


def src(kind: str, **fields: Any) -> dict[str, Any]:
    """A release-create payload for site1 / R[0] with the given source."""
    return {"name": SITE, "release": R[0], "source": {"type": kind, **fields}}


WP = {"title": "t", "admin_email": "a@b.co", "admin_password": "longenough", "url": "https://x.test"}
CERT = {"name": SITE, "email": "a@b.co", "server": "https://ca/dir"}
SITE_INVALID = [
    ("site-ensure", {"name": "../x"}),
    ("site-ensure", {"name": SITE, "php_version": "8.2;id"}),
    ("release-create", {**src("placeholder", html=""), "release": "latest"}),
    ("release-create", src("svn", url="x")),
    ("release-create", src("git", url="ext::sh -c id", branch="m")),
    ("release-create", src("git", url="ssh://h/r", branch="m")),
    ("release-create", src("git", url="/a/../b", branch="m")),
    ("release-create", src("git", url="/r", branch="--upload-pack=x")),
    ("release-create", src("archive", url="file:///etc/shadow", sha256="0" * 64)),
    ("release-create", src("archive", url="https://x/a.tgz", sha256="abc")),
    ("release-create", {**placeholder(R[0]), "build": ["rm -rf /"]}),
    ("release-create", {**placeholder(R[0]), "shared": ["../etc"]}),
    ("release-create", {**placeholder(R[0]), "shared": ["/etc"]}),
    ("release-create", {**placeholder(R[0]), "env": {"path": "../.env", "content": "A=1"}}),
    ("release-create", {**placeholder(R[0]), "docroot": "../x"}),
    ("release-activate", {"name": SITE, "release": R[0], "keep": 0}),
    ("site-exec", {"name": SITE, "step": "bash"}),
    ("site-exec", {"name": SITE, "step": "wp-install", "admin_user": "a b", **WP}),
    ("cert-issue", {**CERT, "domains": ["x.test; id"]}),
    ("cert-issue", {**CERT, "domains": ["x.test"], "server": "http://ca/dir"}),
    ("cert-issue", {**CERT, "domains": []}),
    ("supervisor-apply", {"name": SITE, "content": "[program:w]\ncommand=php artisan queue:work\n"}),
    ("supervisor-apply", {"name": SITE, "content": "[program:w]\ncommand=x\nuser=root\n"}),
    ("supervisor-apply", {"name": SITE, "content": "[unix_http_server]\nfile=/tmp/x\n"}),
    ("site-remove", {"name": "Root"}),
]


@pytest.mark.parametrize(("command", "payload"), SITE_INVALID)
def test_site_commands_reject_invalid_input(agent: Agent, command: str, payload: dict[str, Any]) -> None:
    result = agent(command, payload)
    assert (result.rc, result.out["changed"], result.error["code"]) == (1, False, "invalid_input"), result.out
    assert agent.calls("supervisorctl") == []


def test_release_commands_need_site_ensure_first(agent: Agent) -> None:
    assert agent("release-create", placeholder(R[0])).error["code"] == "not_found"
    assert agent("releases-list", {"name": SITE}).error["code"] == "not_found"


# --------------------------------------------------------------------------- release-create


def test_release_create_clones_a_real_git_repository_as_the_site_user(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    repo, sha = make_repo(base, site["uid"], {"public/index.php": "<?php echo 'hi';\n", "README": "x\n"})
    payload = {
        "name": SITE,
        "release": R[0],
        "source": {"type": "git", "url": f"file://{repo}", "branch": "main"},
        "build": ["php-lint", "composer-install"],
    }
    out = agent.ok("release-create", payload)

    assert out["changed"] is True
    assert out["data"] == {"release": R[0], "commit": sha, "path": f"/var/www/site1/releases/{R[0]}"}
    release = agent.path(f"/var/www/site1/releases/{R[0]}")
    assert (release / "public" / "index.php").read_text() == "<?php echo 'hi';\n"
    assert not (release / ".git").exists()
    # Files are the site user's, group www-data through the setgid directories, never root's.
    assert mode_owner(release / "public" / "index.php")[1:] == (site["uid"], 33)
    assert "php-lint: exit 0" in " ".join(out["log"])
    assert any("composer-install: skipped" in line for line in out["log"])

    again = agent.ok("release-create", payload)
    assert (again["changed"], again["data"]["commit"]) == (False, sha)


def test_release_create_runs_build_steps_as_the_site_user(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    # A fake `php artisan` that records who runs it: proves the build never runs as root.
    artisan = "<?php file_put_contents('storage/who', posix_geteuid() . ' ' . getenv('HOME'));\n"
    repo, _ = make_repo(
        base, site["uid"], {"artisan": artisan, "public/index.php": "<?php\n", "storage/.keep": ""}
    )
    out = agent.ok(
        "release-create",
        {
            "name": SITE,
            "release": R[0],
            "source": {"type": "git", "url": str(repo), "branch": "main"},
            "build": ["artisan-optimize"],
            "shared": ["storage"],
        },
    )
    assert out["changed"] is True
    who = agent.path("/var/www/site1/shared/storage/who")
    assert who.read_text() == f"{site['uid']} {agent.path('/var/www/site1')}"
    assert who.stat().st_uid == site["uid"]
    link = agent.path(f"/var/www/site1/releases/{R[0]}/storage")
    assert os.readlink(link) == "../../shared/storage"


def test_release_create_seeds_shared_paths_once_and_links_nested_ones(
    agent: Agent, site: dict[str, Any]
) -> None:
    agent.ok("release-create", {**placeholder(R[0]), "shared": ["wp-content/uploads", "storage"]})
    shared = agent.path("/var/www/site1/shared")
    assert (shared / "wp-content" / "uploads").is_dir() and (shared / "storage").is_dir()
    (shared / "storage" / "kept.txt").write_text("user data")
    agent.ok("release-create", {**placeholder(R[1]), "shared": ["wp-content/uploads", "storage"]})
    second = agent.path(f"/var/www/site1/releases/{R[1]}")
    assert os.readlink(second / "wp-content" / "uploads") == "../../../shared/wp-content/uploads"
    assert (second / "storage" / "kept.txt").read_text() == "user data"


def test_release_create_writes_the_env_file_for_the_site_user_only_and_never_logs_it(
    agent: Agent, site: dict[str, Any]
) -> None:
    secret = "s3cr3t-Pa55word"
    content = f"APP_KEY=base64:abc\nDB_PASSWORD={secret}\n"
    out = agent.ok("release-create", {**placeholder(R[0]), "env": {"path": ".env", "content": content}})
    env = agent.path(f"/var/www/site1/releases/{R[0]}/.env")
    assert env.read_text() == content
    assert mode_owner(env) == (0o640, site["uid"], site["gid"])
    assert secret not in json.dumps(out)


def test_release_create_with_a_plain_repository_serves_its_top_level(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    repo, _ = make_repo(base, site["uid"], {"index.html": "top\n"})
    agent.ok(
        "release-create",
        {"name": SITE, "release": R[0], "source": {"type": "git", "url": str(repo), "branch": "main"}},
    )
    public = agent.path(f"/var/www/site1/releases/{R[0]}/public")
    assert os.readlink(public) == "."
    assert (public / "index.html").read_text() == "top\n"


def test_a_failing_build_step_removes_the_release_and_keeps_current(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    agent.ok("release-create", placeholder(R[0]))
    agent.ok("release-activate", {"name": SITE, "release": R[0]})
    repo, _ = make_repo(base, site["uid"], {"public/index.php": "<?php echo 'broken'\n"})

    result = agent(
        "release-create",
        {
            "name": SITE,
            "release": R[1],
            "source": {"type": "git", "url": str(repo), "branch": "main"},
            "build": ["php-lint"],
        },
    )

    assert (result.rc, result.error["code"], result.error["step"]) == (1, "build_failed", "php-lint")
    assert result.error["message"].startswith("php-lint exited 255: ")
    assert "syntax error" in result.error["message"]
    assert not agent.path(f"/var/www/site1/releases/{R[1]}").exists()
    assert os.readlink(agent.path("/var/www/site1/current")) == f"releases/{R[0]}"
    assert [r["name"] for r in agent.ok("releases-list", {"name": SITE})["data"]["releases"]] == [R[0]]


def test_composer_install_failure_is_a_build_failure(agent: Agent, site: dict[str, Any], base: Path) -> None:
    composer = agent.fake(
        "composer", "#!/bin/sh\necho 'Your requirements could not be resolved' >&2\nexit 2\n"
    )
    agent.env["VPSMANAGER_COMPOSER"] = composer
    repo, _ = make_repo(
        base, site["uid"], {"composer.json": '{"require": {"chom/nope": "*"}}', "public/x": ""}
    )
    result = agent(
        "release-create",
        {
            "name": SITE,
            "release": R[0],
            "source": {"type": "git", "url": str(repo), "branch": "main"},
            "build": ["composer-install"],
        },
    )
    assert (result.error["code"], result.error["step"]) == ("build_failed", "composer-install")
    assert "exited 2: Your requirements could not be resolved" in result.error["message"]
    assert list(agent.path("/var/www/site1/releases").iterdir()) == []


def test_a_missing_branch_is_reported_with_gits_message(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    repo, _ = make_repo(base, site["uid"], {"index.html": "x"})
    result = agent(
        "release-create",
        {"name": SITE, "release": R[0], "source": {"type": "git", "url": str(repo), "branch": "nope"}},
    )
    assert result.error["code"] == "source_failed"
    assert "exited 128" in result.error["message"] and "nope" in result.error["message"]
    assert list(agent.path("/var/www/site1/releases").iterdir()) == []


# --------------------------------------------------------------------------- archives


@dataclass
class Files:
    url: str
    served: dict[str, bytes]


@pytest.fixture
def files() -> Iterator[Files]:
    served: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = served.get(self.path.lstrip("/"))
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Files(url=f"http://127.0.0.1:{server.server_address[1]}", served=served)
    finally:
        server.shutdown()
        server.server_close()


def tarball(members: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """(name, data or None for a directory, symlink target or None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                archive.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o555
                archive.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def archive_payload(files: Files, name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    files.served[name] = data
    source = {
        "type": "archive",
        "url": f"{files.url}/{name}",
        "sha256": hashlib.sha256(data).hexdigest(),
        **extra,
    }
    return {"name": SITE, "release": R[0], "source": source}


def test_archive_release_like_wordpress_strips_its_top_level_directory(
    agent: Agent, site: dict[str, Any], files: Files
) -> None:
    data = tarball(
        [
            ("wordpress", None, None),
            ("wordpress/wp-admin", None, None),
            ("wordpress/index.php", b"<?php // wp\n", None),
            ("wordpress/wp-admin/admin.php", b"<?php\n", None),
            ("wordpress/latest", None, "wp-admin/admin.php"),
        ]
    )
    payload = archive_payload(files, "wordpress.tar.gz", data, strip_components=1)
    out = agent.ok("release-create", {**payload, "shared": ["wp-content/uploads"], "build": ["php-lint"]})

    release = agent.path(f"/var/www/site1/releases/{R[0]}")
    assert out["data"]["commit"] == "sha256:" + payload["source"]["sha256"]
    assert (release / "public" / "index.php").read_text() == "<?php // wp\n"
    assert os.readlink(release / "latest") == "wp-admin/admin.php"
    assert mode_owner(release / "index.php")[1:] == (site["uid"], 33)
    # Read-only directories from the archive must not make the release impossible to prune.
    agent.ok("release-activate", {"name": SITE, "release": R[0], "keep": 1})
    for release in R[1:3]:
        agent.ok("release-create", placeholder(release))
        pruned = agent.ok("release-activate", {"name": SITE, "release": release, "keep": 1})["data"]["pruned"]
    assert pruned == [R[0]]


def test_archive_release_from_a_zip(agent: Agent, site: dict[str, Any], files: Files) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app/public/index.html", "zip!")
    agent.ok("release-create", archive_payload(files, "a.zip", buffer.getvalue(), strip_components=1))
    assert agent.path(f"/var/www/site1/releases/{R[0]}/public/index.html").read_text() == "zip!"


def test_archive_with_a_wrong_sha256_is_rejected_before_extraction(
    agent: Agent, site: dict[str, Any], files: Files
) -> None:
    payload = archive_payload(files, "a.tar.gz", tarball([("public/index.html", b"x", None)]))
    payload["source"]["sha256"] = "0" * 64
    result = agent("release-create", payload)
    assert (result.error["code"], result.error["step"]) == ("checksum_mismatch", "verify")
    assert "nothing was extracted" in result.error["message"]
    assert list(agent.path("/var/www/site1/releases").iterdir()) == []


@pytest.mark.parametrize(
    "members",
    [
        [("public/index.html", b"ok", None), ("../evil", b"pwned", None)],
        [("public/index.html", b"ok", None), ("public/../../evil", b"pwned", None)],
        [("/evil", b"pwned", None)],
        [("public", None, None), ("public/escape", None, "../../../evil")],
        [("public/abs", None, "/etc/passwd")],
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "escaping-symlink", "absolute-symlink"],
)
def test_unsafe_archives_are_rejected(
    agent: Agent, site: dict[str, Any], files: Files, base: Path, members: list[Any]
) -> None:
    result = agent("release-create", archive_payload(files, "evil.tar.gz", tarball(members)))
    assert (result.error["code"], result.error["step"]) == ("unsafe_archive", "extract")
    assert list(agent.path("/var/www/site1/releases").iterdir()) == []
    assert not any(p.name == "evil" for p in base.rglob("evil"))


def test_a_download_failure_is_reported(agent: Agent, site: dict[str, Any], files: Files) -> None:
    payload = archive_payload(files, "x.tar.gz", b"x")
    payload["source"]["url"] = f"{files.url}/missing.tar.gz"
    result = agent("release-create", payload)
    assert result.error["code"] == "source_failed"
    assert "404" in result.error["message"]


# --------------------------------------------------------------------------- activate, list, prune


def test_release_activate_switches_current_and_prunes_beyond_keep(agent: Agent, site: dict[str, Any]) -> None:
    for release in R[:6]:
        agent.ok("release-create", placeholder(release))
    out = agent.ok("release-activate", {"name": SITE, "release": R[5], "keep": 5})

    assert out["changed"] is True
    assert out["data"] == {"current": R[5], "previous": None, "pruned": [R[0]]}
    current = agent.path("/var/www/site1/current")
    assert os.readlink(current) == f"releases/{R[5]}"
    assert (current / "public" / "index.html").read_text() == f"release {R[5]}"

    again = agent.ok("release-activate", {"name": SITE, "release": R[5], "keep": 5})
    assert (again["changed"], again["data"]["pruned"]) == (False, [])

    # Rolling back to an older release keeps the one it replaced even when beyond keep.
    back = agent.ok("release-activate", {"name": SITE, "release": R[1], "keep": 1})
    assert back["data"]["previous"] == R[5]
    assert sorted(back["data"]["pruned"]) == [R[2], R[3], R[4]]
    listing = agent.ok("releases-list", {"name": SITE})["data"]
    assert listing["current"] == R[1]
    assert [r["name"] for r in listing["releases"]] == [R[5], R[1]]
    assert listing["releases"][0]["commit"] == "placeholder" and listing["releases"][0]["created"].endswith(
        "Z"
    )
    assert agent.ok("facts")["data"]["site_releases"] == {SITE: {"current_release": R[1], "releases": 2}}


def test_release_activate_refuses_unknown_or_incomplete_releases(agent: Agent, site: dict[str, Any]) -> None:
    agent.path(f"/var/www/site1/releases/{R[3]}").mkdir()  # no completion marker
    for release in (R[2], R[3]):
        result = agent("release-activate", {"name": SITE, "release": release})
        assert (result.error["code"], result.out["changed"]) == ("not_found", False)
    assert not agent.path("/var/www/site1/current").exists()


@dataclass
class Web:
    port: int

    def get(self, host: str, path: str = "/") -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc)


@pytest.fixture
def web(agent: Agent, base: Path) -> Iterator[Web]:
    """A real nginx whose workers run as www-data, serving site1 the way CHOM's vhosts do."""
    require(NGINX)
    prefix = base / "nginx"
    prefix.mkdir()
    port = free_port()
    home = agent.path("/var/www/site1")
    temp = " ".join(f"{kind}_temp_path {prefix}/{kind};" for kind in ("proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(
        f"daemon off;\nuser www-data;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log;\nevents {{ worker_connections 256; }}\n"
        f"http {{ access_log off; client_body_temp_path {prefix}/body; {temp}\n"
        f"  server {{ listen 127.0.0.1:{port}; server_name site1.test other.test;\n"
        f"    root {home}/current/public;\n"
        f"    location ^~ /.well-known/acme-challenge/ {{ root {home}/acme; default_type text/plain; }}\n"
        "    location ~ /\\. { deny all; }\n"
        "  }\n}\n"
    )
    argv = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        web = Web(port=port)
        wait_for(lambda: web.get("site1.test")[0] != 0, "nginx to listen")
        yield web
    finally:
        stop(proc)


def test_nginx_serves_each_activated_release_without_a_failed_request(
    agent: Agent, site: dict[str, Any], web: Web
) -> None:
    releases = R[:21]
    agent.ok("release-create", placeholder(releases[0]))
    agent.ok("release-activate", {"name": SITE, "release": releases[0]})
    assert web.get("site1.test") == (200, f"release {releases[0]}")
    valid = {f"release {r}" for r in releases}
    stats = {"requests": 0, "errors": 0}
    bad: list[tuple[int, str]] = []
    done = threading.Event()

    def hammer() -> None:
        while not done.is_set():
            status, body = web.get("site1.test")
            stats["requests"] += 1
            if status != 200 or body not in valid:
                stats["errors"] += 1
                bad.append((status, body))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    activations: list[float] = []
    try:
        for release in releases[1:]:
            agent.ok("release-create", placeholder(release))
            started = time.monotonic()
            out = agent.ok("release-activate", {"name": SITE, "release": release, "keep": 5})
            activations.append(time.monotonic() - started)
            assert out["changed"] is True
            assert web.get("site1.test") == (200, f"release {release}")
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=10)
    total, slowest = sum(activations), max(activations)
    print(f"\n20 activations (agent runs incl. prune): {total:.2f}s, slowest {slowest:.3f}s;", end=" ")
    print(f"request loop during create+activate: {stats['requests']} requests, {stats['errors']} errors")
    assert stats["requests"] > 20
    assert (stats["errors"], bad[:3]) == (0, [])
    assert len(list(agent.path("/var/www/site1/releases").iterdir())) == 5


def test_php_files_and_the_env_file_are_not_readable_by_other_sites(
    agent: Agent, site: dict[str, Any]
) -> None:
    other = agent.ok("site-ensure", {"name": "site2"})["data"]
    agent.ok("release-create", {**placeholder(R[0]), "env": {"path": ".env", "content": "X=1\n"}})
    release = agent.path(f"/var/www/site1/releases/{R[0]}")
    for path, uid in ((release / "public" / "index.html", other["uid"]), (release / ".env", 33)):
        probe = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "cat", str(path)],
            capture_output=True,
            timeout=30,
        )
        assert probe.returncode != 0, path
    # ... while nginx's group www-data can read the site's public files.
    probe = subprocess.run(
        [
            "setpriv",
            "--reuid=33",
            "--regid=33",
            "--clear-groups",
            "cat",
            str(release / "public" / "index.html"),
        ],
        capture_output=True,
        timeout=30,
    )
    assert probe.returncode == 0


# --------------------------------------------------------------------------- site-exec


def test_site_exec_runs_a_step_in_current_as_the_site_user(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    artisan = "<?php if ($argv[1] === 'migrate') { echo 'Nothing to migrate.'; }\n"
    repo, _ = make_repo(base, site["uid"], {"artisan": artisan, "public/index.php": "<?php\n"})
    agent.ok(
        "release-create",
        {"name": SITE, "release": R[0], "source": {"type": "git", "url": str(repo), "branch": "main"}},
    )
    assert agent("site-exec", {"name": SITE, "step": "artisan-migrate"}).error["code"] == "not_found"
    agent.ok("release-activate", {"name": SITE, "release": R[0]})
    out = agent.ok("site-exec", {"name": SITE, "step": "artisan-migrate"})
    assert (out["changed"], out["data"]) == (False, {"release": R[0], "step": "artisan-migrate", "ran": True})
    assert any("Nothing to migrate" in line for line in out["log"])


def test_site_exec_wp_install_passes_the_password_on_stdin_only(
    agent: Agent, site: dict[str, Any], base: Path
) -> None:
    # A stand-in for WordPress with the functions the installer calls: records its arguments.
    wp_load = """<?php
define('ABSPATH', __DIR__ . '/');
function is_blog_installed() { return file_exists(__DIR__ . '/installed.json'); }
function wp_slash($v) { return $v; }
function update_option($k, $v) { $GLOBALS['opts'][$k] = $v; }
function wp_install($t, $u, $e, $p, $d, $pw) {
    register_shutdown_function(function () use ($t, $u, $e, $pw) {
        file_put_contents(__DIR__ . '/installed.json', json_encode([$t, $u, $e, $pw, $GLOBALS['opts']]));
    });
    return ['user_id' => 1];
}
"""
    files = {"wp-load.php": wp_load, "wp-admin/includes/upgrade.php": "<?php\n", "index.php": "<?php\n"}
    repo, _ = make_repo(base, site["uid"], files)
    agent.ok(
        "release-create",
        {"name": SITE, "release": R[0], "source": {"type": "git", "url": str(repo), "branch": "main"}},
    )
    agent.ok("release-activate", {"name": SITE, "release": R[0]})
    password = "correct horse battery staple"
    payload = {
        "name": SITE,
        "step": "wp-install",
        "title": "My blog",
        "admin_user": "admin",
        "admin_email": "admin@example.com",
        "admin_password": password,
        "url": "https://site1.test",
    }
    out = agent.ok("site-exec", payload)
    assert (out["changed"], out["data"]["installed"]) == (True, True)
    assert password not in json.dumps(out)
    recorded = json.loads(agent.path(f"/var/www/site1/releases/{R[0]}/installed.json").read_text())
    assert recorded == [
        "My blog",
        "admin",
        "admin@example.com",
        password,
        {"siteurl": "https://site1.test", "home": "https://site1.test"},
    ]
    assert list(agent.path("/var/www/site1/tmp").iterdir()) == []
    assert agent.ok("site-exec", payload)["changed"] is False


# --------------------------------------------------------------------------- supervisor, removal


def test_supervisor_apply_writes_rereads_and_is_idempotent(agent: Agent, site: dict[str, Any]) -> None:
    content = "[program:site1-queue]\ncommand=php artisan queue:work\nuser=site1\n"
    assert agent.ok("supervisor-apply", {"name": SITE, "content": content})["changed"] is True
    assert agent.path("/etc/supervisor/conf.d/chom-site1.conf").read_text() == content
    assert agent.calls("supervisorctl") == ["reread", "update"]
    assert agent.ok("supervisor-apply", {"name": SITE, "content": content})["changed"] is False
    assert agent.ok("supervisor-remove", {"name": SITE})["changed"] is True
    assert agent.ok("supervisor-remove", {"name": SITE})["changed"] is False
    assert agent.calls("supervisorctl") == ["reread", "update"] * 2


def test_site_remove_removes_everything_and_is_idempotent(agent: Agent, site: dict[str, Any]) -> None:
    agent.ok("release-create", placeholder(R[0]))
    agent.ok("release-activate", {"name": SITE, "release": R[0]})
    agent.ok("supervisor-apply", {"name": SITE, "content": "[program:w]\ncommand=sleep 1\nuser=site1\n"})
    agent.ok("file-write", {"path": "/etc/cron.d/chom-site1", "content": "* * * * * site1 true\n"})
    live = agent.path("/etc/letsencrypt/live/site1")
    live.mkdir(parents=True)
    agent.path("/etc/letsencrypt/renewal").mkdir()
    agent.path("/etc/letsencrypt/renewal/site1.conf").write_text("x")
    agent.ok("file-write", {"path": "/etc/nginx/sites-available/chom-site1.conf", "content": "server {}\n"})

    blocked = agent("site-remove", {"name": SITE})
    assert (blocked.error["code"], blocked.out["changed"]) == ("conflict", False)
    assert "vhost" in blocked.error["message"]
    agent.path("/etc/nginx/sites-available/chom-site1.conf").unlink()

    out = agent.ok("site-remove", {"name": SITE})
    assert out["changed"] is True
    for path in (
        "/var/www/site1",
        "/var/log/chom/site1",
        "/etc/cron.d/chom-site1",
        "/etc/letsencrypt/live/site1",
    ):
        assert not agent.path(path).exists(), path
    assert not agent.path("/etc/letsencrypt/renewal/site1.conf").exists()
    assert not agent.path("/etc/supervisor/conf.d/chom-site1.conf").exists()
    assert "site1:" not in agent.path("/etc/passwd").read_text()
    assert agent.ok("site-remove", {"name": SITE})["changed"] is False


def test_site_remove_refuses_accounts_chom_does_not_manage(agent: Agent) -> None:
    agent.path("/var/www/www-data").mkdir(parents=True)
    assert agent("site-remove", {"name": "www-data"}).error["code"] == "user_conflict"
    assert agent.path("/var/www/www-data").is_dir()
    # Without a CHOM user, a directory that merely has the name is left alone.
    agent.path("/var/www/html").mkdir()
    assert agent.ok("site-remove", {"name": "html"})["changed"] is False
    assert agent.path("/var/www/html").is_dir()


# --------------------------------------------------------------------------- ACME


@dataclass
class Acme:
    server: str
    ca_pem: str
    challtestsrv: str

    def point(self, host: str, address: str) -> None:
        for path, body in (
            ("clear-a", {"host": host + "."}),
            ("add-a", {"host": host + ".", "addresses": [address]}),
        ):
            request = urllib.request.Request(
                f"{self.challtestsrv}/{path}", data=json.dumps(body).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def acme(web: Web, base: Path) -> Iterator[Acme]:
    """pebble validating HTTP-01 on the test nginx's port, resolving names via challtestsrv."""
    for binary in ("/usr/bin/pebble", "/usr/bin/pebble-challtestsrv", "/usr/bin/certbot", "/usr/bin/openssl"):
        require(binary)
    d = base / "pebble"
    d.mkdir()
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/ca.key")
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        f"{d}/ca.key",
        "-days",
        "2",
        "-subj",
        "/CN=CHOM test CA",
        "-out",
        f"{d}/ca.pem",
    )
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/leaf.key")
    openssl("req", "-new", "-key", f"{d}/leaf.key", "-subj", "/CN=localhost", "-out", f"{d}/leaf.csr")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ca = ["-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key", "-CAcreateserial"]
    openssl(
        "x509",
        "-req",
        "-in",
        f"{d}/leaf.csr",
        *ca,
        "-days",
        "2",
        "-extfile",
        f"{d}/san.ext",
        "-out",
        f"{d}/leaf.pem",
    )
    acme_port, mgmt_port, dns_port, chall_port = free_port(), free_port(), free_port(), free_port()
    (d / "pebble.json").write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"127.0.0.1:{acme_port}",
                    "managementListenAddress": f"127.0.0.1:{mgmt_port}",
                    "certificate": f"{d}/leaf.pem",
                    "privateKey": f"{d}/leaf.key",
                    "httpPort": web.port,
                    "tlsPort": free_port(),
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    challtestsrv = subprocess.Popen(
        [
            "pebble-challtestsrv",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            f"127.0.0.1:{dns_port}",
        ]
        + ["-http01", "", "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{chall_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    pebble = subprocess.Popen(
        ["pebble", "-config", f"{d}/pebble.json", "-dnsserver", f"127.0.0.1:{dns_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        server = f"https://127.0.0.1:{acme_port}/dir"
        context = ssl.create_default_context(cafile=f"{d}/ca.pem")

        def ready() -> bool:
            try:
                with urllib.request.urlopen(server, timeout=0.2, context=context) as response:
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_for(ready, "pebble")
        wait_for(lambda: _answers(f"http://127.0.0.1:{chall_port}/"), "pebble-challtestsrv")
        yield Acme(
            server=server, ca_pem=(d / "ca.pem").read_text(), challtestsrv=f"http://127.0.0.1:{chall_port}"
        )
    finally:
        stop(pebble)
        stop(challtestsrv)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=0.2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def test_cert_issue_gets_a_real_certificate_over_http01_and_then_changes_nothing(
    agent: Agent, site: dict[str, Any], web: Web, acme: Acme
) -> None:
    acme.point("site1.test", "127.0.0.1")
    acme.point("other.test", "127.0.0.1")
    payload = {
        "name": SITE,
        "domains": ["site1.test", "other.test"],
        "email": "ops@example.com",
        "server": acme.server,
        "ca_bundle": acme.ca_pem,
    }
    started = time.monotonic()
    first = agent.ok("cert-issue", payload)
    print(f"\nACME issue (pebble, HTTP-01 through nginx, 2 domains): {time.monotonic() - started:.2f}s")

    data = first["data"]
    assert first["changed"] is True
    assert data["cert_path"] == "/etc/letsencrypt/live/site1/fullchain.pem"
    assert data["key_path"] == "/etc/letsencrypt/live/site1/privkey.pem"
    not_after = time.mktime(time.strptime(data["not_after"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert not_after > time.time() + 86400
    fullchain = agent.path(data["cert_path"])
    assert "BEGIN CERTIFICATE" in fullchain.read_text()
    assert agent.path(data["key_path"]).exists()

    second = agent.ok("cert-issue", payload)
    assert (second["changed"], second["data"]) == (False, data)

    # A failed order (the new name resolves nowhere nginx listens) keeps the old certificate.
    before = fullchain.read_bytes()
    acme.point("gone.test", "127.0.0.2")
    result = agent("cert-issue", {**payload, "domains": ["site1.test", "gone.test"]})
    assert (result.error["code"], result.out["changed"]) == ("acme_failed", False)
    assert "certbot exited 1" in result.error["message"]
    assert fullchain.read_bytes() == before
    assert agent.ok("cert-issue", payload)["changed"] is False
