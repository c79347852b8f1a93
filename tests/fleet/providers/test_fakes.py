"""The fakes must be able to fail, or tests built on them prove nothing."""

from __future__ import annotations

import pytest
import requests

from devstack.clouds import FakeCloud

from .conftest import Cloud


def _get(fake: FakeCloud, path: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or fake.token}"}
    return requests.get(fake.url + path, headers=headers, timeout=5)


def test_assert_requested_fails_when_the_request_was_not_made(cloud: Cloud[FakeCloud]) -> None:
    _get(cloud.fake, cloud.fake.server_path("1"))

    with pytest.raises(AssertionError, match="expected POST .*requests were: GET "):
        cloud.fake.assert_requested("POST", cloud.fake.create_path)


def test_assert_requested_fails_on_a_different_method(cloud: Cloud[FakeCloud]) -> None:
    _get(cloud.fake, cloud.fake.server_path("1"))

    with pytest.raises(AssertionError):
        cloud.fake.assert_requested("DELETE", cloud.fake.server_path("1"))


def test_assert_not_requested_fails_when_the_request_was_made(cloud: Cloud[FakeCloud]) -> None:
    _get(cloud.fake, cloud.fake.server_path("1"))

    with pytest.raises(AssertionError):
        cloud.fake.assert_not_requested("GET", cloud.fake.server_path("1"))


def test_it_refuses_a_wrong_token(cloud: Cloud[FakeCloud]) -> None:
    assert _get(cloud.fake, cloud.fake.server_path("1"), token="wrong").status_code == 401


def test_injected_failures_run_out(cloud: Cloud[FakeCloud]) -> None:
    cloud.fake.fail_next(503, times=2, retry_after="5")
    path = cloud.fake.server_path("1")

    statuses = [_get(cloud.fake, path).status_code for _ in range(3)]

    assert statuses == [503, 503, 404]
    assert cloud.fake.requests[0].method == "GET"


def test_injected_failures_only_hit_matching_requests(cloud: Cloud[FakeCloud]) -> None:
    cloud.fake.fail_next(500, method="POST")

    assert _get(cloud.fake, cloud.fake.server_path("1")).status_code == 404
    assert _get(cloud.fake, "/no/such/route").status_code == 404


def test_a_created_server_becomes_ready_only_after_enough_polls(cloud: Cloud[FakeCloud]) -> None:
    server = cloud.fake.add_server("42", {"label": "x", "name": "x"})

    readiness = []
    for _ in range(3):
        cloud.fake.poll("42")
        readiness.append(cloud.fake.is_ready(server))

    assert readiness == [False, True, True]
