"""deploy/observability/mtail/chom-sites.mtail in the real mtail: per-site counters from access
logs in CHOM's format (sites/configs.py ACCESS_LOG_FORMAT), including lines whose tenant-written
fields try to pass for other status, bytes or time fields."""

import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from devstack.processes import free_port, spawn, stop_processes
from sites.configs import ACCESS_LOG_FORMAT
from tests.support.processes import wait_for

pytestmark = pytest.mark.real

MTAIL = shutil.which("mtail") or "/usr/bin/mtail"
PROGRAM = settings.BASE_DIR / "deploy" / "observability" / "mtail" / "chom-sites.mtail"
PREFIX = '203.0.113.9 - - [01/Dec/2025:10:00:00 +0000] "GET / HTTP/1.1"'

# Lines as nginx writes them with escape=default (every " a client sends becomes \x22).
SITE1 = [
    f'{PREFIX} 200 612 "-" "curl/8.0" "a.test" "-" 0.003',
    f'{PREFIX} 500 10 "-" "curl/8.0" "a.test" "0.248" 0.250',
    # The User-Agent pretends the line ends with a 500 of 99999 bytes taking 9.9 s.
    f'{PREFIX} 404 153 "-" "x\\x22 500 99999 \\x22-\\x22 \\x22-\\x22 \\x22-\\x22 \\x22-\\x22 9.900"'
    ' "a.test" "-" 0.001',
    # A forged request line and user with spaces: fake fields before the real ones.
    '203.0.113.9 - a 500 7 [x] [01/Dec/2025:10:00:00 +0000] "GET /\\x22 500 99999 \\x22a\\x22 \\x22b\\x22 '
    '\\x22c\\x22 \\x22d\\x22 9.900 HTTP/1.1" 301 0 "-" "-" "a.test" "-" 0.000',
    # Two upstream times (an internal redirect): still one quoted field.
    f'{PREFIX} 200 20 "-" "-" "a.test" "0.010, 0.020 : 0.005" 0.040',
    # nginx's plain combined format (a vhost not rendered by CHOM): no time field, not counted.
    f'{PREFIX} 500 5 "-" "curl/8.0"',
    # A client that got no status line: not counted either.
    f'{PREFIX} 000 0 "-" "-" "a.test" "-" 0.000',
]
SITE2 = [f'{PREFIX} 503 1 "-" "-" "b.test" "-" 1.500']


@pytest.fixture
def mtail(tmp_path):
    if not Path(MTAIL).exists():
        pytest.skip("mtail is not installed (apt-get install mtail)")
    progs = tmp_path / "progs"
    progs.mkdir()
    shutil.copy(PROGRAM, progs)
    logs = tmp_path / "var" / "log" / "chom"
    (logs / "site1").mkdir(parents=True)
    (logs / "site1" / "access.log").touch()
    port = free_port()
    proc = spawn(
        [MTAIL, "--progs", str(progs), "--logs", f"{logs}/*/access.log", "--address", "127.0.0.1",
         "--port", str(port), "--logtostderr", "--emit_prog_label=false"],
        tmp_path / "mtail.log",
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}/metrics", logs, tmp_path / "mtail.log"
    finally:
        stop_processes([proc])


def _samples(url: str) -> dict[tuple, float] | None:
    try:
        text = requests.get(url, timeout=2).text
    except requests.ConnectionError:
        return None
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("chom_site_")
    }


def _append(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write("".join(line + "\n" for line in lines))


def test_it_counts_requests_bytes_and_latency_per_site_from_the_end_of_each_line(mtail):
    url, logs, log = mtail
    wait_for(lambda: _samples(url) is not None, timeout=10, what="mtail listening")
    # A new site: nginx creates its (empty) log when it loads the vhost, before any request; mtail
    # finds it by its glob and reads what is appended from then on.
    _append(logs / "site-2" / "access.log", [])
    wait_for(lambda: "site-2/access.log" in log.read_text(), timeout=10, what="mtail tailing site-2")
    _append(logs / "site1" / "access.log", SITE1)
    _append(logs / "site-2" / "access.log", SITE2)
    _append(logs / "site-2" / "error.log", [f'{PREFIX} 500 1 "-" "-" "-" "-" 1.0'])
    want = ("chom_site_http_requests_total", (("site", "site-2"), ("status", "5xx")))
    try:
        samples = wait_for(
            lambda: (s := _samples(url) or {}).get(want) and s, timeout=15, what="mtail metrics"
        )
    except TimeoutError:
        raise AssertionError(log.read_text()) from None

    def requests_of(site: str) -> dict[str, float]:
        return {
            dict(labels)["status"]: value
            for (name, labels), value in samples.items()
            if name == "chom_site_http_requests_total" and dict(labels)["site"] == site
        }

    assert requests_of("site1") == {"2xx": 2, "3xx": 1, "4xx": 1, "5xx": 1}
    assert requests_of("site-2") == {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 1}
    assert samples[("chom_site_http_response_bytes_total", (("site", "site1"),))] == 612 + 10 + 153 + 0 + 20
    duration = "chom_site_http_request_duration_seconds"
    assert samples[(f"{duration}_count", (("site", "site1"),))] == 5
    assert samples[(f"{duration}_sum", (("site", "site1"),))] == pytest.approx(0.294)
    # 0.000 (a static file) is in the first bucket, and every request in +Inf.
    assert samples[(f"{duration}_bucket", (("le", "0.005"), ("site", "site1")))] == 3
    assert samples[(f"{duration}_bucket", (("le", "+Inf"), ("site", "site1")))] == 5
    assert samples[(f"{duration}_bucket", (("le", "0.25"), ("site", "site1")))] == 5
    assert samples[(f"{duration}_bucket", (("le", "1"), ("site", "site-2")))] == 0
    assert samples[(f"{duration}_bucket", (("le", "2.5"), ("site", "site-2")))] == 1
    # Nothing from error.log, nothing labelled by a field a client wrote.
    assert {dict(labels).get("site") for _, labels in samples} == {"site1", "site-2"}


def test_it_reads_the_format_nginx_writes():
    """The program's line pattern is the end of ACCESS_LOG_FORMAT: combined, then three fields."""
    assert ACCESS_LOG_FORMAT.startswith(
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent"'
    )
    assert ACCESS_LOG_FORMAT.endswith('"$host" "$upstream_response_time" $request_time')
    assert '"[^"]*" "[^"]*" "[^"]*" "[^"]*" (?P<seconds>\\d+\\.\\d+)$/' in PROGRAM.read_text()


def test_it_compiles(tmp_path):
    if not Path(MTAIL).exists():
        pytest.skip("mtail is not installed (apt-get install mtail)")
    shutil.copy(PROGRAM, tmp_path)
    result = subprocess.run(
        [MTAIL, "--compile_only", "--progs", str(tmp_path), "--logtostderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_it_keeps_the_combined_prefix_the_grafana_dashboards_loki_pattern_reads():
    """NGINX_COMBINED read as Loki's `pattern` does: each <_> up to the literal after it."""
    import re

    from observability.queries import NGINX_COMBINED

    dashboard = (settings.BASE_DIR / "deploy" / "observability" / "dashboards" / "site.json").read_text()
    assert f"pattern `{NGINX_COMBINED}`".replace('"', '\\"') in dashboard  # as JSON spells it
    regex = "^" + "".join(
        "(.*?)" if part == "<_>" else f"(?P<{part[1:-1]}>.*?)" if part.startswith("<") else re.escape(part)
        for part in re.split(r"(<[a-z_]+>)", NGINX_COMBINED)
        if part
    )
    for line in SITE1[:5]:
        fields = re.match(regex + "$", line)
        assert fields and fields["status"] in ("200", "500", "404", "301") and fields["bytes"].isdigit(), line
