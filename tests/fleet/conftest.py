"""Fixtures shared by the agent's test modules (tests/fleet/test_agent_*.py); helpers are in
agent_fixtures.py. `base`, `site` and `web` serve the site modules, which replace `agent` by
agent_fixtures.site_agent.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.agent_fixtures import NGINX, SITE, Agent, Web, free_port, make_agent, require, stop, wait_for


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    """The agent with its root under pytest's tmp_path."""
    return make_agent(tmp_path)


# --------------------------------------------------------------------------- sites


@pytest.fixture
def base() -> Iterator[Path]:
    """A world-traversable temp root: the site user and nginx's workers must reach it (pytest's own
    tmp directories are 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="chom-sites-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def site(agent: Agent) -> dict[str, Any]:
    return agent.ok("site-ensure", {"name": SITE})["data"]


@pytest.fixture
def web(agent: Agent, base: Path) -> Iterator[Web]:
    """A real nginx whose workers run as www-data, serving site1 the way CHOM's vhosts do."""
    require(NGINX)
    prefix = base / "nginx"
    prefix.mkdir()
    port = free_port()
    home = agent.path("/var/www/site1")
    webroot = agent.path("/var/lib/chom/acme/site1")
    temp = " ".join(f"{kind}_temp_path {prefix}/{kind};" for kind in ("proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(
        f"daemon off;\nuser www-data;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log;\nevents {{ worker_connections 256; }}\n"
        f"http {{ access_log off; client_body_temp_path {prefix}/body; {temp}\n"
        f"  server {{ listen 127.0.0.1:{port}; server_name site1.test other.test;\n"
        f"    root {home}/current/public;\n"
        f"    location ^~ /.well-known/acme-challenge/ {{ root {webroot}; default_type text/plain; }}\n"
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
