"""The one way CHOM opens SSH to a VPS: its connect timeout is the fleet's, or shorter for the
quick status reads (cron and worker state), fixed before the connection is made."""

import pytest

from fleet.models import Vps
from fleet.services import transport_for


@pytest.fixture
def vps(db):
    return Vps.objects.create(name="web-1", provider="manual", ip_address="192.0.2.10")


def test_it_uses_the_fleets_connect_timeout_by_default(vps, settings):
    settings.FLEET_SSH_CONNECT_TIMEOUT = 12
    assert transport_for(vps).connect_timeout == 12


def test_it_shortens_the_connect_timeout_before_connecting_but_never_lengthens_it(vps, settings):
    settings.FLEET_SSH_CONNECT_TIMEOUT = 12
    assert transport_for(vps, connect_timeout=3).connect_timeout == 3
    assert transport_for(vps, connect_timeout=60).connect_timeout == 12
