from __future__ import annotations

import dataclasses

import pytest

from devstack.clouds import OTHER_PUBLIC_KEY, PUBLIC_KEY, DigitalOceanFake, md5_fingerprint
from fleet.providers import ProviderError

from .conftest import USER_DATA, Cloud


def test_it_registers_the_ssh_key_and_creates_the_droplet_with_it(
    digitalocean: Cloud[DigitalOceanFake],
) -> None:
    digitalocean.provider.create(digitalocean.spec)

    key_request = digitalocean.fake.assert_requested("POST", "/account/keys")
    droplet_request = digitalocean.fake.assert_requested("POST", "/droplets")
    (key,) = digitalocean.fake.ssh_keys.values()
    assert key_request.body == {"name": key["name"], "public_key": PUBLIC_KEY}
    assert droplet_request.body == {
        "name": "web-1",
        "region": "nyc3",
        "size": "s-1vcpu-1gb",
        "image": "ubuntu-24-04-x64",
        "ssh_keys": [key["id"]],
        "user_data": USER_DATA,
        "tags": ["chom"],
    }


def test_it_reuses_a_key_already_on_the_account(digitalocean: Cloud[DigitalOceanFake]) -> None:
    existing_id = digitalocean.fake.add_ssh_key(PUBLIC_KEY)

    digitalocean.provider.create(digitalocean.spec)

    fingerprint = md5_fingerprint(PUBLIC_KEY)
    digitalocean.fake.assert_requested("GET", f"/account/keys/{fingerprint}")
    assert digitalocean.fake.assert_requested("POST", "/droplets").body["ssh_keys"] == [existing_id]
    assert len(digitalocean.fake.ssh_keys) == 1


def test_it_does_not_create_a_droplet_when_the_key_is_rejected(
    digitalocean: Cloud[DigitalOceanFake],
) -> None:
    digitalocean.fake.fail_next(422, path="/account/keys", message="Key invalid, wrong length")

    with pytest.raises(ProviderError) as caught:
        digitalocean.provider.create(digitalocean.spec)

    assert caught.value.permanent is True
    assert "Key invalid, wrong length" in str(caught.value)
    digitalocean.fake.assert_not_requested("POST", "/droplets")


def test_it_rejects_a_malformed_public_key_before_calling_the_api(
    digitalocean: Cloud[DigitalOceanFake],
) -> None:
    spec = dataclasses.replace(digitalocean.spec, ssh_public_key="not a key!")

    with pytest.raises(ProviderError) as caught:
        digitalocean.provider.create(spec)

    assert caught.value.permanent is True
    assert digitalocean.fake.requests == []


def test_it_leaves_out_empty_user_data(digitalocean: Cloud[DigitalOceanFake]) -> None:
    spec = dataclasses.replace(digitalocean.spec, user_data="", ssh_public_key=OTHER_PUBLIC_KEY)

    digitalocean.provider.create(spec)

    assert "user_data" not in digitalocean.fake.assert_requested("POST", "/droplets").body


def test_it_reports_the_public_not_the_private_address(
    digitalocean: Cloud[DigitalOceanFake],
) -> None:
    server = digitalocean.provider.create(digitalocean.spec)

    running = digitalocean.provider.wait_until_running(server.provider_id)

    assert running.ip_address == digitalocean.fake.servers[server.provider_id].ip
    assert running.ip_address != "10.132.0.5"


@pytest.mark.parametrize(
    ("droplet_status", "expected"),
    [("new", "provisioning"), ("active", "running"), ("off", "off"), ("archive", "gone")],
)
def test_it_maps_droplet_statuses(
    digitalocean: Cloud[DigitalOceanFake], droplet_status: str, expected: str
) -> None:
    server = digitalocean.provider.create(digitalocean.spec)
    digitalocean.fake.servers[server.provider_id].overrides["status"] = droplet_status

    assert digitalocean.provider.get(server.provider_id).status == expected
