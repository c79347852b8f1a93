"""The real Laravel test app (tests/support/laravel.py) on this machine: the e2e suite relies on it
booting inside its own tree (PHP-FPM's open_basedir) and on its caches behaving like production's."""

import shutil
import subprocess
from base64 import b64encode
from pathlib import Path

import pytest
import requests

from tests.support.laravel import DEBIAN_PHP, app_files, install_vendor
from tests.support.processes import free_port, stop_process, wait_for

pytestmark = pytest.mark.real


@pytest.fixture
def app(tmp_path: Path) -> Path:
    if shutil.which("php") is None or not (DEBIAN_PHP / "Illuminate" / "autoload.php").exists():
        pytest.skip("php and Debian's php-laravel-framework are needed (apt-get install them)")
    app = tmp_path / "app"
    for name, content in app_files("7").items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(content)
    install_vendor(app)
    key = b64encode(bytes(range(32))).decode()
    (app / ".env").write_text(f"APP_KEY=base64:{key}\nDB_DATABASE=unused\nGREETING=bonjour\n")
    return app


def _artisan(app: Path, *args: str) -> str:
    # open_basedir as CHOM's PHP-FPM pools set it: the framework must come from the app's own tree.
    argv = ["php", "-d", f"open_basedir={app}/", "artisan", *args]
    proc = subprocess.run(argv, cwd=app, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_it_boots_the_laravel_app_inside_its_tree_and_serves_the_cached_config(app: Path):
    assert _artisan(app, "--version").startswith("Laravel Framework 8.")
    _artisan(app, "optimize")
    assert {"config.php", "routes-v7.php"} <= {p.name for p in (app / "bootstrap" / "cache").iterdir()}
    routes = _artisan(app, "route:list")
    assert "api/messages" in routes and "App\\Http\\Controllers\\PageController@show" in routes
    # Cached config is what production serves: a later .env edit shows only after config:cache.
    (app / ".env").write_text((app / ".env").read_text().replace("bonjour", "changed"))

    port = free_port()
    server = subprocess.Popen(
        ["php", "-d", f"open_basedir={app}/", "-S", f"127.0.0.1:{port}", "-t", "public"],
        cwd=app, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        page = wait_for(lambda: _get(f"http://127.0.0.1:{port}/"), timeout=10, what="php -S")
        assert (page.status_code, page.text) == (200, "version 7 greeting=bonjour key=ok")
        _artisan(app, "config:cache")
        assert _get(f"http://127.0.0.1:{port}/").text == "version 7 greeting=changed key=ok"
        assert _get(f"http://127.0.0.1:{port}/missing").status_code == 404
    finally:
        stop_process(server)


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None
