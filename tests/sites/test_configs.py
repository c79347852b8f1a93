"""Rendered configs are valid for the real nginx and php-fpm binaries, and say what we mean."""

import shutil
import subprocess
from pathlib import Path

import pytest

from sites.configs import VhostSpec, render_pool, render_vhost

pytestmark = pytest.mark.real  # real nginx/php-fpm/MariaDB/PostgreSQL/promtool (tests/support/real.py)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PHP_FPM = shutil.which("php-fpm8.2") or "/usr/sbin/php-fpm8.2"


def _nginx_t(tmp_path: Path, vhost: str) -> subprocess.CompletedProcess:
    """nginx -t opens log files, so the site's tree is recreated under TMP_PATH."""
    (tmp_path / "logs").mkdir(exist_ok=True)
    shutil.copy("/etc/nginx/fastcgi_params", tmp_path / "fastcgi_params")
    for n in range(1, 5):
        (tmp_path / f"log/site{n}").mkdir(parents=True, exist_ok=True)
    (tmp_path / "site.conf").write_text(vhost.replace("/var/log/chom/", f"{tmp_path}/log/"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
        f"http {{\n include /etc/nginx/mime.types;\n include {tmp_path}/site.conf;\n}}\n"
    )
    return subprocess.run(
        [
            NGINX,
            "-t",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-e",
            str(tmp_path / "logs/error.log"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=a.example.com"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return str(cert), str(key)


SPECS = {
    "static": VhostSpec(name="site1", domains=("a.example.com",), php=False),
    "php": VhostSpec(name="site2", domains=("b.example.com", "www.b.example.com"), php=True),
    "laravel": VhostSpec(name="site3", domains=("c.example.com",), php=True, php_fallback=True),
    "suspended": VhostSpec(name="site4", domains=("d.example.com",), php=True, suspended=True),
}


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
@pytest.mark.parametrize("kind", sorted(SPECS))
def test_it_renders_vhosts_nginx_accepts(tmp_path, kind):
    result = _nginx_t(tmp_path, render_vhost(SPECS[kind]))
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")
def test_it_renders_a_tls_vhost_that_redirects_http(tmp_path):
    cert, key = _self_signed(tmp_path)
    vhost = render_vhost(
        VhostSpec(name="site1", domains=("a.example.com",), php=True, ssl_cert=cert, ssl_key=key)
    )
    result = _nginx_t(tmp_path, vhost)
    assert result.returncode == 0, result.stderr
    assert "return 301 https://$host$request_uri;" in vhost
    assert "listen 443 ssl http2;" in vhost
    assert vhost.count("/.well-known/acme-challenge/") == 2  # renewals keep working over http
    assert vhost.count('add_header X-Chom-Site "site1" always;') == 2  # both server blocks


def test_it_serves_the_acme_challenge_from_the_site_webroot_and_hides_dotfiles():
    vhost = render_vhost(SPECS["php"])
    assert "root /var/lib/chom/acme/site2;" in vhost
    assert "deny all;" in vhost
    assert "fastcgi_pass unix:/run/php/chom-site2.sock;" in vhost
    assert "$realpath_root$fastcgi_script_name" in vhost
    assert "server_name b.example.com www.b.example.com;" in vhost
    for header in ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
        assert header in vhost
    assert 'add_header X-Chom-Site "site2" always;' in vhost


def test_it_serves_a_suspended_page_without_touching_the_release():
    vhost = render_vhost(SPECS["suspended"])
    assert "return 503" in vhost and "current/public" not in vhost


@pytest.mark.skipif(not Path(PHP_FPM).exists(), reason="php-fpm8.2 is not installed")
def test_it_renders_a_pool_php_fpm_accepts_confined_to_the_site(tmp_path):
    pool = render_pool(name="site7", php_version="8.2")
    (tmp_path / "pool.conf").write_text(pool.replace("/run/php/", f"{tmp_path}/"))
    (tmp_path / "fpm.conf").write_text(
        f"[global]\npid = {tmp_path}/fpm.pid\nerror_log = {tmp_path}/fpm.log\n"
        f"include = {tmp_path}/pool.conf\n"
    )
    subprocess.run(["useradd", "--system", "--no-create-home", "site7"], capture_output=True)
    try:
        result = subprocess.run(
            [PHP_FPM, "-t", "-y", str(tmp_path / "fpm.conf")], capture_output=True, text=True, timeout=30
        )
    finally:
        subprocess.run(["userdel", "site7"], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert "php_admin_value[open_basedir] = /var/www/site7/" in pool
    assert "/tmp" not in pool.split("open_basedir")[1].splitlines()[0]
    assert "user = site7" in pool and "listen.owner = www-data" in pool
