"""The crawler's page discovery (routes.py) on a URL configuration made for it: no browser."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from chom.models import Tenant
from sites.models import Site
from tests.browser.routes import dashboard_pages


@pytest.fixture
def found(db, settings):
    settings.ROOT_URLCONF = "tests.browser.fake_urls"
    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.create_user("ops", is_staff=True))
    objects = {"tenant": Tenant(slug="acme"), "site": Site(pk=7)}
    return {p.name: p for p in dashboard_pages(client=client, objects=objects)}


def test_it_tells_pages_from_actions_and_endpoints(found):
    assert found["home"].kind == "page"
    assert (found["tenant-detail"].kind, found["tenant-detail"].url) == ("page", "/things/acme/")
    assert found["tenant-go"].kind == "action"
    assert found["tenant-stats"].kind == "endpoint"
    assert (found["ns:site-backups"].kind, found["ns:site-backups"].url) == ("page", "/nested/7/")


def test_it_reports_a_detail_page_without_a_fixture_object_and_a_crashing_page(found):
    assert found["widget-detail"].kind == "broken"
    assert "no fixture object fills pk" in found["widget-detail"].problem
    assert (found["crash"].kind, found["crash"].problem) == ("broken", "GET /crash/ answered 500")


def test_it_leaves_out_machine_endpoints(found):
    assert "api-root" not in found
