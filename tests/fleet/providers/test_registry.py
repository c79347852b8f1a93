from __future__ import annotations

import pytest

from fleet.providers import PROVIDERS, ProviderError, get_provider
from fleet.providers.digitalocean import DigitalOceanProvider
from fleet.providers.linode import LinodeProvider
from fleet.providers.vultr import VultrProvider


def test_each_provider_is_registered_under_its_own_name() -> None:
    assert PROVIDERS["digitalocean"] is DigitalOceanProvider
    assert PROVIDERS["linode"] is LinodeProvider
    assert PROVIDERS["vultr"] is VultrProvider
    assert all(cls.name == name for name, cls in PROVIDERS.items())


def test_it_builds_a_provider_from_config() -> None:
    provider = get_provider("linode", token="t", base_url="http://fake/v4/", timeout=2.5)

    assert isinstance(provider, LinodeProvider)
    assert provider.base_url == "http://fake/v4"
    assert provider.timeout == 2.5


def test_it_defaults_to_the_documented_api_endpoints() -> None:
    assert get_provider("digitalocean").base_url == "https://api.digitalocean.com/v2"
    assert get_provider("linode").base_url == "https://api.linode.com/v4"
    assert get_provider("vultr").base_url == "https://api.vultr.com/v2"


def test_it_rejects_an_unknown_provider_permanently() -> None:
    with pytest.raises(ProviderError) as caught:
        get_provider("aws")

    assert caught.value.permanent is True
    assert "unknown provider 'aws'" in str(caught.value)
