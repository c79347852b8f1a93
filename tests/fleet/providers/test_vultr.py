from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from devstack.clouds import OTHER_PUBLIC_KEY, PUBLIC_KEY, VultrFake

from .conftest import USER_DATA, Cloud


def test_it_adds_the_ssh_key_and_creates_the_instance_with_it(vultr: Cloud[VultrFake]) -> None:
    vultr.provider.create(vultr.spec)

    key_request = vultr.fake.assert_requested("POST", "/ssh-keys")
    body = vultr.fake.assert_requested("POST", "/instances").body
    (key_id,) = vultr.fake.ssh_keys
    assert key_request.body["ssh_key"] == PUBLIC_KEY
    assert body["sshkey_id"] == [key_id]
    assert body["region"] == "ewr"
    assert body["plan"] == "vc2-1c-1gb"
    assert body["os_id"] == 2284
    assert body["label"] == body["hostname"] == "web-1"
    assert base64.b64decode(body["user_data"]).decode() == USER_DATA
    assert body["tags"] == ["chom"]


def test_it_reuses_a_key_found_on_a_later_page(vultr: Cloud[VultrFake]) -> None:
    vultr.fake.add_ssh_key(OTHER_PUBLIC_KEY)
    existing_id = vultr.fake.add_ssh_key(PUBLIC_KEY)

    vultr.provider.create(vultr.spec)

    vultr.fake.assert_not_requested("POST", "/ssh-keys")
    assert len(vultr.fake.requests_to("GET", "/ssh-keys")) == 2
    assert vultr.fake.assert_requested("POST", "/instances").body["sshkey_id"] == [existing_id]


def test_it_adds_the_key_only_once_for_several_instances(vultr: Cloud[VultrFake]) -> None:
    vultr.provider.create(vultr.spec)
    vultr.provider.create(dataclasses.replace(vultr.spec, name="web-2"))

    assert len(vultr.fake.requests_to("POST", "/ssh-keys")) == 1
    assert len(vultr.fake.ssh_keys) == 1


def test_it_passes_a_non_numeric_image_as_image_id(vultr: Cloud[VultrFake]) -> None:
    vultr.provider.create(dataclasses.replace(vultr.spec, image="docker"))

    body = vultr.fake.assert_requested("POST", "/instances").body
    assert body["image_id"] == "docker"
    assert "os_id" not in body


def test_it_has_no_address_until_vultr_assigns_one(vultr: Cloud[VultrFake]) -> None:
    server = vultr.provider.create(vultr.spec)

    assert server.ip_address is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"status": "pending", "server_status": "none"}, "provisioning"),
        ({"status": "active", "server_status": "installingbooting"}, "provisioning"),
        ({"status": "active", "server_status": "ok"}, "running"),
        ({"status": "active", "server_status": "ok", "power_status": "stopped"}, "off"),
        ({"status": "suspended", "server_status": "ok"}, "off"),
        ({"status": "resizing", "server_status": "locked"}, "provisioning"),
    ],
)
def test_it_maps_vultr_statuses(vultr: Cloud[VultrFake], fields: dict[str, Any], expected: str) -> None:
    server = vultr.provider.create(vultr.spec)
    vultr.fake.servers[server.provider_id].overrides.update(fields)

    assert vultr.provider.get(server.provider_id).status == expected
