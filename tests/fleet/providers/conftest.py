from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import pytest

from devstack.clouds import FAKES, PUBLIC_KEY, DigitalOceanFake, FakeClock, FakeCloud, LinodeFake, VultrFake
from fleet.providers import Provider, ServerSpec, get_provider

F = TypeVar("F", bound=FakeCloud)

USER_DATA = "#cloud-config\nruncmd:\n  - echo hello > /root/chom\n"

# A realistic small server per provider, in each API's own vocabulary.
SPECS = {
    "digitalocean": ServerSpec("web-1", "nyc3", "s-1vcpu-1gb", "ubuntu-24-04-x64", PUBLIC_KEY, USER_DATA),
    "linode": ServerSpec("web-1", "us-east", "g6-nanode-1", "linode/ubuntu24.04", PUBLIC_KEY, USER_DATA),
    "vultr": ServerSpec("web-1", "ewr", "vc2-1c-1gb", "2284", PUBLIC_KEY, USER_DATA),
}


@dataclass
class Cloud(Generic[F]):
    fake: F
    provider: Provider
    clock: FakeClock
    spec: ServerSpec


def connect(fake: FakeCloud, clock: FakeClock, *, token: str | None = None) -> Provider:
    provider = get_provider(
        fake.provider_name,
        token=fake.token if token is None else token,
        base_url=fake.url,
        timeout=5.0,
        poll_interval=2.0,
    )
    provider.sleep = clock.sleep
    provider.monotonic = clock.monotonic
    return provider


def _open(fake_class: type[F]) -> Iterator[Cloud[F]]:
    with fake_class() as fake:
        clock = FakeClock()
        yield Cloud(fake, connect(fake, clock), clock, SPECS[fake.provider_name])


@pytest.fixture(params=sorted(FAKES))
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud[FakeCloud]]:
    yield from _open(FAKES[request.param])


@pytest.fixture
def digitalocean() -> Iterator[Cloud[DigitalOceanFake]]:
    yield from _open(DigitalOceanFake)


@pytest.fixture
def linode() -> Iterator[Cloud[LinodeFake]]:
    yield from _open(LinodeFake)


@pytest.fixture
def vultr() -> Iterator[Cloud[VultrFake]]:
    yield from _open(VultrFake)
