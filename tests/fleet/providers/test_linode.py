from __future__ import annotations

import base64
import dataclasses
import string

import pytest

from devstack.clouds import PUBLIC_KEY, LinodeFake
from fleet.providers import ProviderError

from .conftest import USER_DATA, Cloud


def test_it_creates_the_instance_with_key_user_data_and_tag(linode: Cloud[LinodeFake]) -> None:
    linode.provider.create(linode.spec)

    body = linode.fake.assert_requested("POST", "/linode/instances").body
    assert body["label"] == "web-1"
    assert body["region"] == "us-east"
    assert body["type"] == "g6-nanode-1"
    assert body["image"] == "linode/ubuntu24.04"
    assert body["authorized_keys"] == [PUBLIC_KEY]
    assert base64.b64decode(body["metadata"]["user_data"]).decode() == USER_DATA
    assert body["tags"] == ["chom"]


def test_it_sets_a_fresh_strong_root_password_per_instance(linode: Cloud[LinodeFake]) -> None:
    linode.provider.create(linode.spec)
    linode.provider.create(dataclasses.replace(linode.spec, name="web-2"))

    first, second = (r.body["root_pass"] for r in linode.fake.requests_to("POST", "/linode/instances"))
    assert first != second
    assert len(first) >= 32
    for characters in (string.ascii_lowercase, string.ascii_uppercase, string.digits):
        assert any(char in characters for char in first)


def test_it_reports_the_field_and_reason_of_a_rejection(linode: Cloud[LinodeFake]) -> None:
    linode.provider.create(linode.spec)

    with pytest.raises(ProviderError) as caught:
        linode.provider.create(linode.spec)

    assert caught.value.permanent is True
    assert caught.value.status == 400
    assert "label: Label must be unique among your linodes" in str(caught.value)


def test_the_root_password_never_appears_in_an_error(linode: Cloud[LinodeFake]) -> None:
    linode.fake.fail_next(500, path="/linode/instances")

    with pytest.raises(ProviderError) as caught:
        linode.provider.create(linode.spec)

    root_pass = linode.fake.assert_requested("POST", "/linode/instances").body["root_pass"]
    assert root_pass not in str(caught.value)


def test_it_reports_the_public_address_even_while_provisioning(linode: Cloud[LinodeFake]) -> None:
    server = linode.provider.create(linode.spec)

    assert server.status == "provisioning"
    assert server.ip_address == linode.fake.servers[server.provider_id].ip


def test_it_skips_private_addresses(linode: Cloud[LinodeFake]) -> None:
    server = linode.provider.create(linode.spec)
    linode.fake.servers[server.provider_id].overrides["ipv4"] = ["192.168.139.20", "198.51.100.7"]

    assert linode.provider.get(server.provider_id).ip_address == "198.51.100.7"


@pytest.mark.parametrize(
    ("linode_status", "expected"),
    [
        ("provisioning", "provisioning"),
        ("booting", "provisioning"),
        ("rebuilding", "provisioning"),
        ("running", "running"),
        ("offline", "off"),
        ("shutting_down", "off"),
        ("deleting", "gone"),
    ],
)
def test_it_maps_linode_statuses(linode: Cloud[LinodeFake], linode_status: str, expected: str) -> None:
    server = linode.provider.create(linode.spec)
    linode.fake.servers[server.provider_id].overrides["status"] = linode_status

    assert linode.provider.get(server.provider_id).status == expected
