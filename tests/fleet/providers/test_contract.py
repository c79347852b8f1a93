"""Behaviour every cloud provider shares, run against each provider's fake API."""

from __future__ import annotations

import dataclasses
import logging
import socket

import pytest

from devstack.clouds import FakeClock, FakeCloud
from fleet.providers import ProviderError, get_provider

from .conftest import Cloud, connect


def test_it_creates_a_server_and_waits_until_it_runs_with_an_ip(cloud: Cloud[FakeCloud]) -> None:
    created = cloud.provider.create(cloud.spec)
    assert created.status == "provisioning"

    running = cloud.provider.wait_until_running(created.provider_id)

    fake_server = cloud.fake.servers[created.provider_id]
    assert running.status == "running"
    assert running.ip_address == fake_server.ip
    assert cloud.clock.sleeps == [2.0]  # one poll interval between the two GETs


def test_it_sends_the_token_as_a_bearer_header_on_every_request(cloud: Cloud[FakeCloud]) -> None:
    server = cloud.provider.create(cloud.spec)
    cloud.provider.get(server.provider_id)

    assert cloud.fake.requests
    for request in cloud.fake.requests:
        assert request.headers["authorization"] == f"Bearer {cloud.fake.token}"


def test_it_tags_the_server_as_chom(cloud: Cloud[FakeCloud]) -> None:
    cloud.provider.create(cloud.spec)

    assert cloud.fake.assert_requested("POST", cloud.fake.create_path).body["tags"] == ["chom"]


def test_it_retries_after_429_honouring_retry_after(cloud: Cloud[FakeCloud]) -> None:
    cloud.fake.fail_next(429, retry_after="7", path=cloud.fake.create_path)

    server = cloud.provider.create(cloud.spec)

    assert server.provider_id in cloud.fake.servers
    assert len(cloud.fake.requests_to("POST", cloud.fake.create_path)) == 2
    assert cloud.clock.sleeps == [7.0]


def test_it_caps_a_long_retry_after(cloud: Cloud[FakeCloud]) -> None:
    cloud.fake.fail_next(429, retry_after="3600", path=cloud.fake.create_path)

    cloud.provider.create(cloud.spec)

    assert cloud.clock.sleeps == [cloud.provider.max_retry_sleep]


def test_it_gives_up_on_persistent_429_as_a_temporary_error(cloud: Cloud[FakeCloud]) -> None:
    cloud.fake.fail_next(429, times=100, retry_after="1")

    with pytest.raises(ProviderError) as caught:
        cloud.provider.get("1234")

    assert caught.value.permanent is False
    assert caught.value.status == 429
    assert len(cloud.fake.requests) == cloud.provider.max_retries + 1


def test_it_retries_a_read_through_a_transient_500(cloud: Cloud[FakeCloud]) -> None:
    server = cloud.provider.create(cloud.spec)
    cloud.fake.fail_next(500, times=2)

    assert cloud.provider.get(server.provider_id).provider_id == server.provider_id
    assert cloud.clock.sleeps == [1.0, 2.0]


def test_it_gives_up_on_persistent_500_as_a_temporary_error(cloud: Cloud[FakeCloud]) -> None:
    path = cloud.fake.server_path("1234")
    cloud.fake.fail_next(500, times=100)

    with pytest.raises(ProviderError) as caught:
        cloud.provider.get("1234")

    assert caught.value.permanent is False
    assert caught.value.status == 500
    assert len(cloud.fake.requests_to("GET", path)) == cloud.provider.max_retries + 1


def test_it_does_not_repeat_a_create_that_failed_with_500(cloud: Cloud[FakeCloud]) -> None:
    """The server may exist despite the 500; repeating the POST could bill a second one."""
    cloud.fake.fail_next(500, times=100, method="POST", path=cloud.fake.create_path)

    with pytest.raises(ProviderError) as caught:
        cloud.provider.create(cloud.spec)

    assert caught.value.permanent is False
    assert len(cloud.fake.requests_to("POST", cloud.fake.create_path)) == 1


def test_it_reports_a_rejected_create_as_permanent_with_the_provider_message(
    cloud: Cloud[FakeCloud],
) -> None:
    spec = dataclasses.replace(cloud.spec, region="mars-1")

    with pytest.raises(ProviderError) as caught:
        cloud.provider.create(spec)

    assert caught.value.permanent is True
    assert caught.value.status in (400, 422)
    assert "region" in str(caught.value).lower()
    assert str(caught.value).startswith(f"{cloud.fake.provider_name}: POST ")
    assert len(cloud.fake.requests_to("POST", cloud.fake.create_path)) == 1


def test_it_reports_a_bad_token_as_permanent(cloud: Cloud[FakeCloud]) -> None:
    provider = connect(cloud.fake, cloud.clock, token="not-the-token")

    with pytest.raises(ProviderError) as caught:
        provider.get("1234")

    assert caught.value.permanent is True
    assert caught.value.status == 401
    assert "Unable to authenticate you" in str(caught.value)


def test_get_reports_an_unknown_server_as_gone(cloud: Cloud[FakeCloud]) -> None:
    server = cloud.provider.get("999999")

    assert (server.provider_id, server.status, server.ip_address) == ("999999", "gone", None)


def test_destroy_is_idempotent(cloud: Cloud[FakeCloud]) -> None:
    server = cloud.provider.create(cloud.spec)

    cloud.provider.destroy(server.provider_id)
    cloud.provider.destroy(server.provider_id)

    assert len(cloud.fake.requests_to("DELETE", cloud.fake.server_path(server.provider_id))) == 2
    assert cloud.provider.get(server.provider_id).status == "gone"


def test_wait_until_running_gives_up_as_temporary_after_its_timeout(
    cloud: Cloud[FakeCloud],
) -> None:
    cloud.fake.ready_after_gets = 1_000
    server = cloud.provider.create(cloud.spec)

    with pytest.raises(ProviderError) as caught:
        cloud.provider.wait_until_running(server.provider_id, timeout=9)

    assert caught.value.permanent is False
    assert "not running after 9s" in str(caught.value)
    assert sum(cloud.clock.sleeps) == 9
    assert len(cloud.fake.requests_to("GET", cloud.fake.server_path(server.provider_id))) == 6


def test_wait_until_running_fails_permanently_when_the_server_vanishes(
    cloud: Cloud[FakeCloud],
) -> None:
    server = cloud.provider.create(cloud.spec)
    cloud.fake.delete_server(server.provider_id)

    with pytest.raises(ProviderError) as caught:
        cloud.provider.wait_until_running(server.provider_id)

    assert caught.value.permanent is True


def test_the_token_never_appears_in_errors_or_logs(
    cloud: Cloud[FakeCloud], caplog: pytest.LogCaptureFixture
) -> None:
    token = cloud.fake.token
    cloud.fake.fail_next(429, retry_after="1")
    cloud.fake.fail_next(400, path=cloud.fake.create_path, message=f"token {token} is suspended")

    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as caught:
        cloud.provider.create(cloud.spec)

    assert "token *** is suspended" in str(caught.value)
    assert token not in str(caught.value)
    assert token not in caplog.text
    assert token not in repr(cloud.provider)


def test_an_unreachable_api_is_retried_then_reported_as_temporary(
    cloud: Cloud[FakeCloud],
) -> None:
    provider = get_provider(cloud.fake.provider_name, token="t", base_url=_closed_port_url())
    clock = FakeClock()
    provider.sleep = clock.sleep

    with pytest.raises(ProviderError) as caught:
        provider.get("1234")

    assert caught.value.permanent is False
    assert "ConnectionError" in str(caught.value)
    assert clock.sleeps == [1.0, 2.0, 4.0]


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v2"
