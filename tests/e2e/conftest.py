"""The local test fleet: real Debian 12 VPSes (systemd-nspawn, own network namespace) booted by
the suite. Needs root and namespaces; elsewhere every e2e test is skipped with the reason."""

import os
from pathlib import Path

import pytest
from django.test import override_settings

from fleet import localfleet
from tests.support.fleet import vps_name

SUPPORTED, WHY = localfleet.host_supports_fleet()


def pytest_collection_modifyitems(config, items):
    if SUPPORTED:
        return
    skip = pytest.mark.skip(reason=f"local test fleet unavailable on this machine: {WHY}")
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if not SUPPORTED:
        terminalreporter.write_line(
            f"!!! e2e tests SKIPPED: local test fleet unavailable: {WHY}", red=True, bold=True
        )


@pytest.fixture(scope="session")
def fleet_image():
    return localfleet.ensure_image()


@pytest.fixture(scope="session")
def fleet_network(fleet_image, tmp_path_factory):
    run = os.getpid() % 10000
    subnet = f"10.251.{100 + os.getpid() % 50}"
    network = localfleet.network_up(f"chome{run}", subnet)
    base = tmp_path_factory.mktemp("fleet")
    yield network, base, subnet
    for workdir in Path(base).glob("*"):
        vps = localfleet.vps_load(workdir)
        if vps:
            localfleet.vps_destroy(vps)
    localfleet.network_down(network)


@pytest.fixture
def local_fleet(fleet_network):
    """Settings that let CHOM's `local` provider create VPSes on this run's own bridge."""
    network, base, subnet = fleet_network
    with override_settings(
        CHOM_LOCAL_PROVIDER=True,
        LOCAL_FLEET_DIR=str(base),
        LOCAL_FLEET_BRIDGE=network.name,
        LOCAL_FLEET_SUBNET=subnet,
        FLEET_MONITORING_SOURCE=network.gateway,
        # The test git servers listen on the bridge's gateway.
        REPOSITORY_ALLOWED_NETWORKS=[f"{subnet}.0/24"],
    ):
        yield base
    for workdir in Path(base).glob("*"):
        vps = localfleet.vps_load(workdir)
        if vps:
            localfleet.vps_destroy(vps)


@pytest.fixture
def make_vps(local_fleet):
    """Boot and bootstrap a local VPS through CHOM's own operation: returns the active Vps row."""
    from django.db import transaction

    from chom.operations import operation_execute
    from fleet import services

    def make(name: str):
        with transaction.atomic():
            vps, op = services.vps_create(name=vps_name(name), provider="local", kind="shared")
        operation_execute(operation_id=op.id)
        op.refresh_from_db()
        assert op.status == "succeeded", op.error
        vps.refresh_from_db()
        return vps

    return make


@pytest.fixture(scope="session")
def pebble(fleet_network, tmp_path_factory):
    """A real ACME CA reachable from the test VPSes, validating HTTP-01 on their port 80."""
    from devstack.pebble import start_pebble

    network, _, _ = fleet_network
    ca = start_pebble(tmp_path_factory.mktemp("pebble"), listen_ip=network.gateway, validation_port=80)
    yield ca
    ca.stop()


@pytest.fixture
def start_prometheus(live_server, fleet_network, settings, tmp_path, transactional_db):
    """Start a real Prometheus + Alertmanager + blackbox exporter wired to CHOM's live server
    (targets from its http_sd, alerts to its webhook): call it with start_monitoring's options
    (rules=, probe_ca_file=, ...); it returns their environment and sets PROMETHEUS_URL. Loki is
    unset: metrics must not need it. All of it stops after the test."""
    from devstack.monitoring import start_monitoring

    network, _, _ = fleet_network
    settings.PROMETHEUS_SD_TOKEN, settings.ALERTMANAGER_WEBHOOK_TOKEN = "sd-token", "hook-token"
    settings.LOKI_URL = settings.LOKI_PUSH_URL = ""
    stops = []

    def start(**options) -> dict:
        env, stop, _ = start_monitoring(
            tmp_path / f"monitoring-{len(stops)}",
            chom_url=live_server.url,
            listen_ip=network.gateway,
            sd_token="sd-token",
            webhook_token="hook-token",
            **options,
        )
        stops.append(stop)
        settings.PROMETHEUS_URL = env["PROMETHEUS_URL"]
        return env

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def monitoring(start_prometheus) -> dict:
    """The monitoring stack with CHOM's own alert rules."""
    return start_prometheus()
