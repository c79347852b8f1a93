"""Shared fixtures: personas per tenant (healthchecks' alice/bob/charlie), API clients."""

import pytest
from rest_framework.test import APIClient

from chom.models import Membership
from chom.services import membership_add, staff_token_create, tenant_create, token_create
from tests.support import real


def pytest_configure(config):
    config.pluginmanager.register(real, "chom-real-daemons")


class Persona:
    def __init__(self, user, tenant, token: str):
        self.user, self.tenant, self.token = user, tenant, token

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.token}")
        return client


def _member(tenant, email: str, role: str) -> Persona:
    membership = membership_add(tenant=tenant, email=email, role=role)
    issued = token_create(user=membership.user, tenant=tenant, name=f"{role} token")
    return Persona(membership.user, tenant, issued.plaintext)


@pytest.fixture
def acme(db):
    tenant, issued = tenant_create(slug="acme", tier="pro", owner_email="alice@acme.test")
    return tenant, issued


@pytest.fixture
def alice(acme) -> Persona:
    """Owner of acme."""
    tenant, issued = acme
    return Persona(issued.token.user, tenant, issued.plaintext)


@pytest.fixture
def bob(acme) -> Persona:
    """A member (teammate) of acme."""
    return _member(acme[0], "bob@acme.test", Membership.Role.MEMBER)


@pytest.fixture
def victor(acme) -> Persona:
    """A viewer of acme: reads only."""
    return _member(acme[0], "victor@acme.test", Membership.Role.VIEWER)


@pytest.fixture
def charlie(db) -> Persona:
    """Owner of another tenant: an outsider to acme."""
    tenant, issued = tenant_create(slug="globex", tier="starter", owner_email="charlie@globex.test")
    return Persona(issued.token.user, tenant, issued.plaintext)


@pytest.fixture
def staff(db) -> Persona:
    issued = staff_token_create(email="ops@chom.test")
    return Persona(issued.token.user, None, issued.plaintext)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()
