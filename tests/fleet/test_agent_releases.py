"""release-create: git clones and build steps run as the site user, shared paths, env files, and
archive sources (checksums, unsafe members, download failures).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import stat
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import (
    SITE,
    Agent,
    R,
    make_repo,
    mode_owner,
    placeholder,
    site_agent,  # noqa: F401 - the site tests' `agent` fixture (replaces conftest's)
)

pytestmark = pytest.mark.real  # real nginx/php-fpm/MariaDB/PostgreSQL/promtool (tests/support/real.py)


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


# Members: ("file", name, data), ("dir", name), ("sym", name, target), ("hard", name, target).
Member = tuple[Any, ...]


def tar_of(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for kind, name, *arg in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size, info.mode = len(arg[0]), 0o644
                archive.addfile(info, io.BytesIO(arg[0]))
                continue
            types = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}
            info.type = types.get(kind, tarfile.FIFOTYPE)
            info.linkname = arg[0] if arg else ""
            archive.addfile(info)
    return buffer.getvalue()


def zip_of(members: list[Member]) -> bytes:
    """Symlinks as Info-ZIP stores them: the S_IFLNK mode, the target as the data."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for kind, name, *arg in members:
            mode = {"file": stat.S_IFREG | 0o644, "dir": stat.S_IFDIR | 0o755, "sym": stat.S_IFLNK | 0o777}
            info = zipfile.ZipInfo(name + ("/" if kind == "dir" else ""))
            info.external_attr = (mode.get(kind) or stat.S_IFIFO | 0o644) << 16
            archive.writestr(info, arg[0] if arg and kind != "dir" else b"")
    return buffer.getvalue()


# (id, members, words of the tar refusal, words of the zip refusal or None: no zip equivalent).
# A check of a link's text alone lets the first rows through: `p/../etc` reads as "etc".
BYPASSES: list[tuple[str, list[Member], str, str | None]] = [
    ("link-through-link", [("sym", "p", "."), ("sym", "q", "p/../etc")], "points outside", "symlink"),
    ("link-through-a-later-link", [("sym", "q", "p/../etc"), ("sym", "p", ".")], "points outside", "symlink"),
    ("link-through-nested-links", [("dir", "a"), ("sym", "a/up", ".."), ("sym", "b", "a/up/a/up/..")],
     "points outside", "symlink"),
    ("member-below-a-link", [("sym", "d", "."), ("file", "d/index.html", b"x")], "lies below", "symlink"),
    ("member-below-a-link-upwards", [("dir", "pub"), ("sym", "pub/up", ".."), ("file", "pub/up/evil", b"x")],
     "lies below", "symlink"),
    ("member-below-a-file", [("file", "a", b"x"), ("file", "a/b", b"y")], "lies below", "lies below"),
    ("same-path-twice", [("file", "a", b"x"), ("sym", "a", "b")], "appears twice", "symlink"),
    ("same-file-twice", [("file", "a", b"x"), ("file", "a", b"y")], "appears twice", "appears twice"),
    ("link-loop", [("sym", "a", "b/x"), ("sym", "b", "a/y")], "loop", "symlink"),
    ("hard-link-outside", [("hard", "h", "../../etc/passwd")], "points outside", None),
    ("hard-link-absolute", [("hard", "h", "/etc/shadow")], "points outside", None),
    ("hard-link-to-a-link", [("sym", "l", "."), ("hard", "h", "l")], "not a file earlier", None),
    ("hard-link-via-a-link", [("dir", "d"), ("file", "d/f", b"x"), ("sym", "e", "d"), ("hard", "h", "e/f")],
     "not a file earlier", None),
    ("hard-link-to-a-later-file", [("hard", "h", "f"), ("file", "f", b"x")], "not a file earlier", None),
    ("fifo", [("fifo", "pipe")], "special file", "special file"),
]  # fmt: skip
BYPASS_CASES = [(f"tar-{n}", "tar.gz", m, w) for n, m, w, _ in BYPASSES] + [
    (f"zip-{n}", "zip", m, w) for n, m, _, w in BYPASSES if w is not None
]


@pytest.mark.parametrize(
    ("fmt", "members", "words"), [c[1:] for c in BYPASS_CASES], ids=[c[0] for c in BYPASS_CASES]
)
def test_it_resolves_archive_links_through_each_other_and_refuses_every_bypass(
    agent: Agent, site: dict[str, Any], files: Files, base: Path, fmt: str, members: list[Member], words: str
) -> None:
    """A downloaded archive (WORDPRESS_ARCHIVE_URL) has only the agent's check: no inspection by
    CHOM comes first."""
    data = tar_of(members) if fmt == "tar.gz" else zip_of(members)
    result = agent("release-create", archive_payload(files, f"evil.{fmt}", data))
    assert (result.error["code"], result.error["step"]) == ("unsafe_archive", "extract"), result.out
    assert words in result.error["message"], result.error
    assert list(agent.path("/var/www/site1/releases").iterdir()) == []
    assert not any(base.rglob("evil")) and not any(base.rglob("index.html"))


def test_it_extracts_links_that_stay_inside_even_through_other_links(
    agent: Agent, site: dict[str, Any], files: Files
) -> None:
    members: list[Member] = [
        ("dir", "public"),
        ("file", "public/a.html", b"a"),
        ("sym", "public/latest", "a.html"),
        ("sym", "docs", "public/../public"),
        ("sym", "alias", "docs/latest"),
        ("sym", "here", "."),
        ("sym", "top", "here/public/.."),
        ("hard", "public/b.html", "public/a.html"),
    ]
    agent.ok("release-create", archive_payload(files, "ok.tar.gz", tar_of(members)))
    release = agent.path(f"/var/www/site1/releases/{R[0]}")
    assert (release / "alias").read_text() == "a"
    assert os.readlink(release / "top") == "here/public/.."
    assert (release / "public" / "b.html").read_text() == "a"
    assert not (release / "public" / "b.html").is_symlink()


def test_a_download_failure_is_reported(agent: Agent, site: dict[str, Any], files: Files) -> None:
    payload = archive_payload(files, "x.tar.gz", b"x")
    payload["source"]["url"] = f"{files.url}/missing.tar.gz"
    result = agent("release-create", payload)
    assert result.error["code"] == "source_failed"
    assert "404" in result.error["message"]


# --------------------------------------------------------------------------- distro packages

WP_PACKAGES = "php wordpress wordpress-theme-twentytwentythree"
WP_VERSION = "6.1.9+dfsg1-0+deb12u1"
# dpkg-query and apt-get as the agent sees them: a package is installed when its marker exists;
# `apt-get install` records the call, then "installs" (Debian's tree appears, markers are set).
FAKE_DPKG_QUERY = """#!/bin/sh
for arg; do
  case $arg in -*) ;; *) [ -e "@STATE@/$arg" ] &&
    printf '%s\\tii \\t%s\\n' "$arg" "$(cat "@STATE@/$arg")";; esac
done
exit 0
"""
FAKE_APT_GET = """#!/bin/sh
echo "$*" >> @CALLS@
[ "$1" = install ] || exit 0
[ -n "@FAIL@" ] && { echo "@FAIL@" >&2; seq -f "progress %g" 20; exit 100; }
cp -a @TREE@ @ROOT@/usr/share/wordpress
for arg; do case $arg in -*|install|*=*) ;; *) echo @VERSION@ > "@STATE@/$arg";; esac; done
"""


@dataclass
class Distro:
    tree: Path  # what `apt-get install wordpress` puts at /usr/share/wordpress
    state: Path  # dpkg's view: one marker per installed package

    def apt_get(self, agent: Agent, fail: str = "") -> None:
        """The fake apt-get; FAIL: the error it prints (exit 100) instead of installing."""
        values = {
            "@CALLS@": str(agent.fakes / "apt-get.calls"),
            "@TREE@": str(self.tree),
            "@ROOT@": str(agent.root),
            "@STATE@": str(self.state),
            "@VERSION@": WP_VERSION,
            "@FAIL@": fail,
        }
        script = FAKE_APT_GET
        for key, value in values.items():
            script = script.replace(key, value)
        agent.env["VPSMANAGER_APT_GET"] = agent.fake("apt-get", script)


def debian_wordpress(base: Path, root: Path) -> Path:
    """A tree shaped like Debian 12's /usr/share/wordpress: a per-host config loader, links to
    /etc, to other packages' files and directories (relative) and to the CA bundle (absolute)."""
    tree = base / "wordpress-package"
    elsewhere = root / "usr" / "share"
    (elsewhere / "javascript" / "underscore").mkdir(parents=True)
    (elsewhere / "javascript" / "underscore" / "underscore.min.js").write_text("// underscore\n")
    (elsewhere / "php" / "getid3").mkdir(parents=True)
    (elsewhere / "php" / "getid3" / "getid3.php").write_text("<?php // getid3\n")
    bundle = base / "ca-certificates.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    files = {
        "index.php": "<?php // wp\n",
        "wp-config.php": "<?php require '/etc/wordpress/config-'.$host.'.php';\n",
        "wp-content/themes/twentytwentythree/style.css": "/* theme */\n",
        "wp-includes/js/.keep": "",
        "wp-includes/certificates/.keep": "",
    }
    for rel, text in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    (tree / ".htaccess").symlink_to("/etc/wordpress/htaccess")
    (tree / "wp-includes" / "js" / "underscore.min.js").symlink_to(
        "../../../javascript/underscore/underscore.min.js"
    )
    (tree / "wp-includes" / "ID3").symlink_to("../../php/getid3")
    (tree / "wp-includes" / "certificates" / "ca-bundle.crt").symlink_to(bundle)
    return tree


@pytest.fixture
def distro(agent: Agent, base: Path) -> Distro:
    distro = Distro(tree=debian_wordpress(base, agent.root), state=base / "dpkg")
    distro.state.mkdir()
    agent.env["VPSMANAGER_DPKG_QUERY"] = agent.fake(
        "dpkg-query", FAKE_DPKG_QUERY.replace("@STATE@", str(distro.state))
    )
    distro.apt_get(agent)
    return distro


def wordpress_payload(release: str) -> dict[str, Any]:
    config = "<?php // Managed by CHOM.\ndefine('DB_PASSWORD', 'pw-very-secret');\n"
    return {
        "name": SITE,
        "release": release,
        "source": {"type": "distro-package", "package": "wordpress"},
        "shared": ["wp-content/uploads"],
        "env": {"path": "wp-config.php", "content": config},
    }


def test_distro_package_source_installs_wordpress_and_copies_it_self_contained(
    agent: Agent, site: dict[str, Any], distro: Distro
) -> None:
    out = agent.ok("release-create", wordpress_payload(R[0]))

    update, install = agent.calls("apt-get")
    assert update == "update" and install.endswith(f" {WP_PACKAGES}")
    assert install.startswith("install -y --no-install-recommends ")
    assert out["data"]["commit"] == f"deb:wordpress={WP_VERSION}"
    release = agent.path(f"/var/www/site1/releases/{R[0]}")
    home = agent.path("/var/www/site1").resolve()
    # Debian's links became the files they point at, and nothing in the release leads out of
    # the site's home (public -> . and the shared uploads are the only links left).
    assert (release / "wp-includes/js/underscore.min.js").read_text() == "// underscore\n"
    assert (release / "wp-includes/ID3/getid3.php").read_text() == "<?php // getid3\n"
    assert (release / "wp-includes/certificates/ca-bundle.crt").read_text().startswith("-----BEGIN")
    links = sorted(str(p.relative_to(release)) for p in release.rglob("*") if p.is_symlink())
    assert links == ["public", "wp-content/uploads"]
    assert all(home in (release / link).resolve().parents for link in links)
    # The site's own configuration and content, not Debian's /etc/wordpress loader or .htaccess.
    assert "Managed by CHOM" in (release / "wp-config.php").read_text()
    assert not (release / ".htaccess").exists()
    assert (release / "wp-content/themes/twentytwentythree/style.css").is_file()
    for path in (release / "index.php", release / "wp-includes/ID3/getid3.php", release / "wp-includes"):
        assert mode_owner(path)[1:] == (site["uid"], 33), path
    assert "pw-very-secret" not in json.dumps(out)

    # Installed now: the next release only copies.
    again = agent.ok("release-create", wordpress_payload(R[1]))
    assert len(agent.calls("apt-get")) == 2
    assert again["data"]["commit"] == f"deb:wordpress={WP_VERSION}"


def test_distro_package_source_reports_an_apt_failure_and_leaves_no_release(
    agent: Agent, site: dict[str, Any], distro: Distro
) -> None:
    distro.apt_get(agent, fail="E: Unable to locate package wordpress")
    result = agent("release-create", wordpress_payload(R[0]))
    assert (result.error["code"], result.error["step"]) == ("source_failed", "apt-install")
    assert f"installing {WP_PACKAGES} from the distribution failed" in result.error["message"]
    assert "Unable to locate package wordpress" in result.error["message"]
    assert list(agent.path("/var/www/site1/releases").iterdir()) == []


def test_distro_package_source_accepts_only_the_packages_it_knows(agent: Agent, site: dict[str, Any]) -> None:
    for source in (
        {"type": "distro-package", "package": "openssh-server"},
        {"type": "distro-package", "package": "wordpress", "path": "/etc"},
        {"type": "distro-package"},
    ):
        result = agent("release-create", {"name": SITE, "release": R[0], "source": source})
        assert result.error["code"] == "invalid_input", source
    assert agent.calls("apt-get") == [] and agent.calls("refuse") == []
