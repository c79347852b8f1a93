"""A real Laravel 8 application for tests (tests/support/laravel_app/), on Debian's framework.

Debian 12 packages Laravel 8.83 (php-laravel-framework, the php-illuminate-* components and their
Symfony, Carbon, Monolog... dependencies) under /usr/share/php, each with an autoload.php that
requires its dependencies through the include path. Packagist is out of reach, so the app ships
no composer.json: its vendor/ is those packages copied from the host's /usr/share/php (the
equivalent of a vendor/ committed to the repository) behind the app's own vendor/autoload.php.
They must live inside the release: PHP-FPM's open_basedir keeps a site inside its home.

The app: `/` prints `version V greeting=G key=ok` (V from the VERSION file, G from the GREETING
variable of .env through config('app.greeting'), key=ok once APP_KEY encrypts);
`POST /api/messages` (message=...) queues App\\Jobs\\RecordMessage, which inserts a row into
`processed_messages`; the scheduler runs `app:tick` every minute, which inserts a row into
`schedule_ticks`; the migrations create those tables and Laravel's `jobs` and `failed_jobs`.
"""

import functools
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import requests

from fleet.remote.commands import Command
from fleet.services import transport_for
from tests.support.git import git_repo
from tests.support.processes import wait_for

APP_DIR = Path(__file__).with_name("laravel_app")
DEBIAN_PHP = Path("/usr/share/php")
APP_TABLES = ("failed_jobs", "jobs", "migrations", "processed_messages", "schedule_ticks")

_MIGRATION = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

class Create{cls}Table extends Migration
{{
    public function up()
    {{
        Schema::create('{table}', function (Blueprint $table) {{
            $table->id();
            $table->string('note');
        }});
    }}

    public function down()
    {{
        Schema::dropIfExists('{table}');
    }}
}}
"""


def app_files(version: str) -> dict[str, str]:
    """The application's own files (no vendor/), its VERSION file saying VERSION."""
    files = {
        str(path.relative_to(APP_DIR)): path.read_text()
        for path in sorted(APP_DIR.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    return files | {"VERSION": f"{version}\n"}


def migration(table: str, stamp: str = "2024_02_01_000000") -> dict[str, str]:
    """One more migration, creating TABLE: a later release's schema change."""
    cls = "".join(part.capitalize() for part in table.split("_"))
    return {f"database/migrations/{stamp}_create_{table}_table.php": _MIGRATION.format(cls=cls, table=table)}


@functools.cache
def debian_packages() -> tuple[str, ...]:
    """The top-level directories of /usr/share/php that Illuminate's autoloader pulls in."""
    code = (
        "require 'Illuminate/autoload.php';"
        "foreach (get_included_files() as $f) { echo substr($f, strlen('/usr/share/php/')), \"\\n\"; }"
    )
    out = subprocess.run(
        ["php", "-d", "include_path=/usr/share/php", "-r", code], capture_output=True, text=True, check=True
    ).stdout
    return tuple(sorted({line.split("/")[0] for line in out.split()}))


def install_vendor(path: Path) -> None:
    """Copy Debian's Laravel framework into PATH/vendor/ (next to the app's vendor/autoload.php)."""
    for package in debian_packages():
        if not (path / "vendor" / package).exists():
            shutil.copytree(DEBIAN_PHP / package, path / "vendor" / package)


def laravel_repo(path: Path, version: str, message: str, extra: dict[str, str] | None = None) -> str:
    """Commit the app at VERSION (plus EXTRA files) into the git repository PATH: its commit id."""
    path.mkdir(parents=True, exist_ok=True)
    install_vendor(path)
    return git_repo(path, app_files(version) | (extra or {}), message)


def sql(vps, site, query: str) -> list[list[str]]:
    """QUERY's rows in the site's database on VPS, as root through the VPS's own client."""
    with transport_for(vps) as transport:
        result = transport.run(Command.of("mariadb", "-N", "-B", "-D", site.db_name, "-e", query))
    assert result.exit_code == 0, result.stdout + result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


def queue_job(vps, site, timeout: float = 30) -> tuple[list[str], float]:
    """Queue a job through the app's page and wait for the queue worker to process it: the job's
    [release that dispatched it, release that processed it], and the seconds it took."""
    message = f"job-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    queued = requests.post(
        f"http://{vps.ip_address}/api/messages",
        data={"message": message},
        headers={"Host": site.domain},
        timeout=10,
    )
    assert (queued.status_code, queued.json()) == (202, {"queued": message}), queued.text
    query = f"SELECT dispatched_by, processed_by FROM processed_messages WHERE message = '{message}'"
    rows = wait_for(lambda: sql(vps, site, query), timeout=timeout, interval=0.5, what="the job's row")
    return rows[0], time.monotonic() - started
