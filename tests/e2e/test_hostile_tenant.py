# ruff: noqa: E501 - the attacks are shell and PHP scripts kept readable as written
"""A hostile tenant on a shared VPS (issue 14): two tenants' sites on one real VPS (nspawn, real
nginx, php-fpm, MariaDB), the attacker's git repository (served from the fleet bridge) carrying
the attacks. Each check asserts the attack failed, that the victim's secret marker never shows up
in anything the attacker can read (HTTP answers, its build output, its backups, its operation
logs), and that the VPS stays active with the victim's site serving.

One VPS and one deploy of each site carry every attack: a boot + two deploys cost ~1 minute on
this machine, and the attacks do not interfere with each other (each reads, none repairs)."""

import io
import os
import subprocess
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from backups.models import Backup
from chom.models import Operation
from chom.operations import operation_execute
from devstack.s3 import BUCKET
from fleet.models import Vps
from fleet.remote.agent_client import Agent
from fleet.services import fleet_health_check, transport_for
from sites.models import Site
from tests.backups.fixtures import moto_s3, s3  # noqa: F401 - shared fixtures
from tests.e2e.test_sites import _create, _get, _sh
from tests.support.git import GitServer

pytestmark = pytest.mark.e2e

SECRET = "VICTIM-SECRET-5f2a9c"  # in the victim's files, logs and database, never served


def _repo(path: Path, files: dict[str, str], links: dict[str, str]) -> None:
    """A git repository with FILES and symbolic LINKS (git stores the link, not the target)."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    for name, target in links.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path / name)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(
        ["git", "-C", str(path), "commit", "-q", "-m", "init"],
        check=True,
        env={**env, "PATH": "/usr/bin:/bin"},
    )


def _victim_files() -> dict[str, str]:
    return {
        "public/index.php": "<?php echo 'victim ok';\n",
        "secret.txt": f"{SECRET}\n",  # outside the document root: only the victim's PHP reads it
        "composer.json": '{"name": "chom/victim", "require": {}, "repositories": [{"packagist.org": false}]}\n',
    }


PROBE = r"""#!/bin/sh
# Runs as the attacker's site user during `composer install` (post-autoload-dump): every line tries
# to reach the victim. Everything it finds lands in public/probe.txt, which the attacker serves.
V=/var/www/@V@
{
echo "== victim home"; ls -la $V 2>&1; cat $V/current/secret.txt 2>&1; cat $V/current/.env 2>&1
echo "== victim logs"; ls -la /var/log/chom/@V@ 2>&1; cat /var/log/chom/@V@/access.log 2>&1
echo "== processes"; for p in /proc/[0-9]*; do printf '%s ' "$p"; tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; done
echo "== hard links"
ln /etc/passwd public/hard-passwd.txt 2>&1 && echo "LINKED /etc/passwd"
ln $V/current/secret.txt public/hard-secret.txt 2>&1 && echo "LINKED secret"
echo "== log shipper"; cat /etc/promtail/config.yml 2>&1
echo "== memory"; head -c 3000M /dev/zero | tail -n 1 > /dev/null; echo "memory hog exit $?"
echo "== fork"; i=0; while [ $i -lt 2000 ]; do sleep 5 & i=$((i+1)); done 2>&1 | tail -n 1; echo "forked"; kill $(jobs -p) 2>/dev/null
} > public/probe.txt 2>&1
exit 0
"""

ATTACK_PHP = r"""<?php
$v = '/var/www/@V@';
$out = [];
$out['read'] = @file_get_contents("$v/current/secret.txt");
$out['env'] = @file_get_contents("$v/current/.env");
$out['include'] = (function () use ($v) { ob_start(); @include "$v/current/secret.txt"; return ob_get_clean(); })();
$out['glob'] = glob("$v/current/*");
$out['log'] = @file_get_contents('/var/log/chom/@V@/access.log');
$out['proc_open'] = function_exists('proc_open') && is_callable('proc_open') ? 'callable' : 'disabled';
$pids = @scandir('/proc') ?: [];
$out['procs'] = [];
foreach ($pids as $p) { if (ctype_digit($p)) { $out['procs'][] = @file_get_contents("/proc/$p/cmdline"); } }
header('Content-Type: application/json');
echo json_encode($out);
"""


def _attacker_files(victim: str) -> tuple[dict[str, str], dict[str, str]]:
    files = {
        "public/index.php": "<?php echo 'attacker ok';\n",
        "public/attack.php": ATTACK_PHP.replace("@V@", victim),
        "probe.sh": PROBE.replace("@V@", victim),
        "composer.json": (
            '{"name": "chom/attacker", "require": {}, "repositories": [{"packagist.org": false}],'
            ' "scripts": {"post-autoload-dump": ["sh probe.sh"]}}\n'
        ),
    }
    links = {
        "public/s-secret.txt": f"/var/www/{victim}/current/secret.txt",
        "public/s-env.txt": f"/var/www/{victim}/current/.env",
        "public/s-marker.json": f"/var/www/{victim}/current/.chom-release.json",
        "public/s-log.txt": f"/var/log/chom/{victim}/access.log",
        "public/s-etc.txt": "/etc/passwd",
        "public/s-root": "/",
    }
    return files, links


def _as_user(vps: Vps, user: str, script: str) -> str:
    return _sh(vps, "runuser", "-u", user, "--", "sh", "-c", script, "sh", f"/var/www/{user}")


@pytest.fixture
def shared_vps(make_vps, alice, charlie):
    return make_vps("hostile")


def test_a_hostile_co_tenant_reaches_nothing_of_its_neighbour(
    alice,
    charlie,
    shared_vps,
    fleet_network,
    tmp_path,
    s3,  # noqa: F811
):
    network, _, _ = fleet_network
    vps = shared_vps
    (tmp_path / "srv").mkdir()
    server = GitServer(tmp_path / "srv", network.gateway)
    try:
        _repo(tmp_path / "victim", _victim_files(), {})
        body, _ = _create(
            alice, domain="victim.test", type="php",
            repository={"url": server.publish(tmp_path / "victim", "victim.git"), "branch": "main"},
        )  # fmt: skip
        victim = Site.objects.get(pk=body["id"])
        assert _get(vps, "victim.test").text == "victim ok"
        # The victim's request URLs carry a token; its database holds the marker too.
        assert _get(vps, "victim.test", f"/?token={SECRET}").status_code == 200
        _sh(
            vps,
            "mariadb",
            victim.db_name,
            "-e",
            f"CREATE TABLE s (v TEXT); INSERT INTO s VALUES ('{SECRET}')",
        )

        files, links = _attacker_files(victim.unix_user)
        _repo(tmp_path / "attacker", files, links)
        body, deploy = _create(
            charlie, domain="attacker.test", type="php",
            repository={"url": server.publish(tmp_path / "attacker", "attacker.git"), "branch": "main"},
        )  # fmt: skip
        attacker = Site.objects.get(pk=body["id"])
        assert attacker.vps_id == victim.vps_id, "both tenants must share the VPS for this suite"
        assert _get(vps, "attacker.test").text == "attacker ok"
        seen: list[str] = []  # everything the attacker could read
        verdicts: dict[str, str] = {}

        @contextmanager
        def attack(name: str, *sources: list[str]):
            """One attack: refused when its block's assertions hold and nothing it read carries
            the victim's marker. Every attack runs even when another one got through."""
            start = len(seen)
            try:
                yield
            except Exception as exc:  # noqa: BLE001 - recorded, reported together below
                verdicts[name] = f"GOT THROUGH: {type(exc).__name__}: {str(exc)[:300]}"
                return
            leaked = [text[:200] for text in seen[start:] if SECRET in text]
            verdicts[name] = f"GOT THROUGH: marker in {leaked}" if leaked else "refused"

        # 1. nginx and symlinks: no link in the attacker's document root is followed to a file the
        #    attacker does not own (another site, its logs, /etc).
        for name in links:
            with attack(f"symlink {name} -> {links[name]}"):
                response = _get(vps, "attacker.test", "/" + name.removeprefix("public/"))
                seen.append(response.text)
                assert response.status_code in (403, 404), f"{response.status_code} {response.text[:200]}"
                assert "root:x:0:0" not in response.text

        # 2. The attacker's PHP: open_basedir and disabled functions hold.
        with attack("PHP file_get_contents/include/glob/proc_open on the victim"):
            response = _get(vps, "attacker.test", "/attack.php")
            seen.append(response.text)
            result = response.json()
            assert not result["read"] and not result["env"] and not result["include"] and not result["log"]
            assert result["glob"] in ([], False) and result["proc_open"] == "disabled"

        # 3. The build's own code (a Composer script as the site user, inside its limits).
        probe = _get(vps, "attacker.test", "/probe.txt").text
        seen.append(probe)
        assert "== victim home" in probe and "== fork" in probe, probe  # the probe really ran

        def section(title: str) -> str:
            return probe.split(f"== {title}")[1].split("\n== ")[0]

        with attack("build script reads the victim's home and logs"):
            assert "Permission denied" in section("victim home") and "Permission denied" in section(
                "victim logs"
            )
        with attack("hard links to files the attacker does not own"):
            assert "LINKED" not in section("hard links")
            for hard in ("/hard-passwd.txt", "/hard-secret.txt"):
                assert _get(vps, "attacker.test", hard).status_code == 404
        with attack("/proc: other users' processes and command lines"):
            processes = section("processes")
            assert "php-fpm" not in processes and "nginx" not in processes and "mariadbd" not in processes
        with attack("memory: a 3 GB allocation in a build"):
            assert "memory hog exit 0" not in section("memory"), section("memory")
        with attack("processes: 2000 forks in a build"):
            fork = section("fork")
            assert "Cannot fork" in fork or "Resource temporarily unavailable" in fork, fork
        with attack("log shipper credential on disk"):
            shipper = section("log shipper")
            assert "Permission denied" in shipper or "No such file" in shipper, shipper

        # 4. A FIFO at a release marker: root's agent never blocks on it.
        with attack("FIFO at the release marker"):
            attacker.refresh_from_db()
            release = attacker.current_release
            _as_user(
                vps, attacker.unix_user,
                f'cd "$1/releases/{release}" && rm -f .chom-release.json && mkfifo .chom-release.json',
            )  # fmt: skip
            started = time.monotonic()
            with transport_for(vps) as transport:
                agent = Agent(transport)
                assert agent.call("facts", timeout=20).data["os"]
                listed = agent.call("releases-list", {"name": attacker.unix_user}, timeout=20).data
            assert time.monotonic() - started < 20
            assert release not in [r["name"] for r in listed["releases"]]
            fleet_health_check()
            vps.refresh_from_db()
            assert vps.status == Vps.Status.ACTIVE

        # 5. Backups never follow the attacker's symlinks as root: `releases` and `current`
        #    pointed at the victim's release before a files backup.
        with attack("releases/current swapped for the victim's before a files backup"):
            _as_user(
                vps, attacker.unix_user,
                'cd "$1" && mv releases releases.mine && ln -s /var/www/' + victim.unix_user + "/releases releases"
                f" && ln -sfn releases/{victim.current_release} current.new && mv -T current.new current",
            )  # fmt: skip
            response = charlie.client().post(f"/api/v1/sites/{attacker.pk}/backups", {}, format="json")
            assert response.status_code == 202, response.content
            operation_execute(operation_id=response.json()["operation"]["id"])
            backup = Backup.objects.filter(site=attacker).order_by("-created_at").first()
            if backup.status == Backup.Status.SUCCEEDED:
                archive = s3.get_object(Bucket=BUCKET, Key=backup.artefacts["files"]["key"])["Body"].read()
                with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                    for member in tar.getmembers():
                        if member.isfile():
                            seen.append(tar.extractfile(member).read().decode(errors="replace"))
            else:
                seen.append(backup.error)
            _as_user(
                vps, attacker.unix_user,
                f'cd "$1" && rm releases && mv releases.mine releases && ln -sfn releases/{attacker.current_release} current',
            )  # fmt: skip

        with attack("operation logs and errors shown to the attacker"):
            shown = Operation.objects.filter(tenant=charlie.tenant)
            seen.extend(
                [e.message for op in shown for e in op.log_entries.all()] + [op.error for op in shown]
            )

        table = "\n".join(f"  {verdict:<12.12} {name}" for name, verdict in verdicts.items())
        print(f"hostile tenant, attack by attack:\n{table}")
        got_through = {name: verdict for name, verdict in verdicts.items() if verdict != "refused"}
        assert got_through == {}, table + "\n" + "\n".join(f"{k}: {v}" for k, v in got_through.items())
        # The victim is untouched and serving; the VPS active.
        assert _get(vps, "victim.test").text == "victim ok"
        assert _get(vps, "victim.test", "/secret.txt").status_code == 404
        assert deploy.status == "succeeded"
        vps.refresh_from_db()
        assert vps.status == Vps.Status.ACTIVE

        # How the VPS is isolated, as the bootstrap set it up (and the slice a build runs in).
        with transport_for(vps) as transport:
            hardening = Agent(transport).call("host-harden").data
        assert hardening["sysctl"]["fs.protected_hardlinks"] == "1" and hardening["hidepid"] == "invisible"
        unit = f"chom-{attacker.unix_user}.slice"
        shown = _sh(vps, "systemctl", "show", unit, "-p", "MemoryMax", "-p", "TasksMax")
        limits = charlie.tenant.limits
        assert f"MemoryMax={limits.site_memory_max_mb * 1024 * 1024}" in shown, shown
        assert f"TasksMax={limits.site_tasks_max}" in shown, shown
    finally:
        server.stop()
