"""Two tenants creating the same domain at the same moment: the database picks one winner."""

import threading

import pytest
from django.db import connection, connections

from chom.errors import ApplicationError
from chom.services import tenant_create
from fleet.models import Vps
from sites.models import Site, SiteHostname
from sites.services import site_create

ROUNDS = 8

pytestmark = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="needs concurrent connections (PostgreSQL, as in CI)"
)


def _race(tenants, domain: str, aliases_of_second=()) -> list:
    barrier = threading.Barrier(len(tenants))
    outcomes: list = [None] * len(tenants)

    def attempt(i, tenant):
        try:
            barrier.wait(timeout=10)
            aliases = list(aliases_of_second) if i else []
            name = domain if not aliases else f"other{i}.{domain}"
            outcomes[i] = site_create(tenant=tenant, domain=name, aliases=aliases, type="static")[0]
        except ApplicationError as exc:
            outcomes[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt, args=(i, t)) for i, t in enumerate(tenants)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


def test_it_lets_exactly_one_of_two_concurrent_creates_win_a_domain_or_alias(transactional_db):
    Vps.objects.create(name="web", provider="manual", ip_address="192.0.2.1", status="active", max_sites=500)
    one, _ = tenant_create(slug="one", tier="pro", owner_email="o@one.test")
    two, _ = tenant_create(slug="two", tier="pro", owner_email="o@two.test")
    for n in range(ROUNDS):
        domain = f"race{n}.example.com"
        # Even rounds: both want it as their domain; odd rounds: the second wants it as an alias.
        outcomes = _race([one, two], domain, aliases_of_second=[domain] if n % 2 else [])
        winners = [o for o in outcomes if isinstance(o, Site)]
        losers = [o for o in outcomes if isinstance(o, ApplicationError)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert (losers[0].status, losers[0].code) == (409, "domain_taken")
        assert SiteHostname.objects.filter(hostname=domain).count() == 1
