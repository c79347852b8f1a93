"""Tests that need a real daemon, root or namespaces may not pass by not running.

A test is a real-daemon test when it lives in tests/e2e, tests/deploy or tests/journeys, is marked
`@pytest.mark.real`, or uses a fixture that starts a real daemon or program (REAL_FIXTURES, Debian's
Chromium of tests/browser included); every skipped test counts as a skipped real-daemon test (the
suite skips only for a missing daemon, program or right). With
`CHOM_REQUIRE_REAL=1` (set by .ci/run) any skip fails the test instead, with the skip's reason,
and the run ends with one census line: `real-daemon tests: N run, M skipped`.
"""

import os

import pytest

REAL_DIRS = ("tests/e2e/", "tests/deploy/", "tests/journeys/")
REAL_FIXTURES = frozenset(
    {"moto_s3", "s3", "fleet_network", "local_fleet", "make_vps", "pebble", "mariadb", "browser"}
)
_census = {"run": set(), "skipped": set()}


def required() -> bool:
    return os.environ.get("CHOM_REQUIRE_REAL") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "real: needs a real daemon, root or namespaces (never skipped in CI)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        if any(d in path for d in REAL_DIRS) or REAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)


def _refuse_skip(report) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"CHOM_REQUIRE_REAL=1: this test may not be skipped here. It was skipped because: {reason}"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and required():
        _refuse_skip(report)


def pytest_runtest_logreport(report):
    """The census, from reports: under pytest-xdist the controller runs no test itself but logs
    every worker's reports, so its summary line counts them all."""
    # Every skip in this suite is for a missing daemon, tool or privilege: all count as such.
    if report.skipped and not hasattr(report, "wasxfail"):
        _census["skipped"].add(report.nodeid)
    elif "real" in report.keywords and report.when == "call":
        _census["run"].add(report.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and required():
        _refuse_skip(report)


def pytest_terminal_summary(terminalreporter):
    run, skipped = len(_census["run"]), len(_census["skipped"] - _census["run"])
    terminalreporter.write_line(
        f"real-daemon tests: {run} run, {skipped} skipped"
        + ("" if required() else " (CHOM_REQUIRE_REAL is not set: skips are allowed)"),
        red=bool(skipped),
        bold=True,
    )
