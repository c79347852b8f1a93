"""The account and catalogue calls behind the dashboard's cloud accounts page, against the fakes."""

from __future__ import annotations

import pytest

from devstack.clouds import FakeCloud
from fleet.models import ProviderCredential, Vps
from fleet.providers import ProviderError
from fleet.providers.base import DISTROS
from fleet.services import vps_server_spec

from .conftest import Cloud, connect


def test_it_lists_regions_sizes_and_images_from_the_cloud(cloud: Cloud[FakeCloud]) -> None:
    provider, fake = cloud.provider, cloud.fake
    assert {r.slug for r in provider.regions()} == set(fake.regions)
    assert {s.slug for s in provider.sizes()} == set(fake.sizes)
    assert {i.slug for i in provider.images()} == set(fake.images)
    assert provider.account() == "ops@example.com"


def test_it_defaults_to_an_image_of_each_supported_distro_the_cloud_lists(cloud: Cloud[FakeCloud]) -> None:
    provider, fake = cloud.provider, cloud.fake
    assert {provider.default_image(d) for d in DISTROS} <= set(fake.images)
    assert provider.default_region in fake.regions and provider.default_size in fake.sizes


def test_it_refuses_a_bad_token_with_the_clouds_message(cloud: Cloud[FakeCloud]) -> None:
    with pytest.raises(ProviderError, match="Unable to authenticate you") as refused:
        connect(cloud.fake, cloud.clock, token="wrong").account()
    assert refused.value.permanent


@pytest.mark.django_db
def test_it_asks_for_the_vps_then_the_account_then_the_provider_defaults(cloud: Cloud[FakeCloud]) -> None:
    provider = cloud.provider
    vps = Vps.objects.create(name="web-9", provider=provider.name)
    spec = vps_server_spec(vps=vps, provider=provider)
    assert (spec.region, spec.size, spec.image) == (
        provider.default_region,
        provider.default_size,
        provider.default_image(),
    )
    ProviderCredential.objects.create(
        provider=provider.name,
        token="t",
        default_region="r-acct",
        default_size="s-acct",
        default_image="i-acct",
    )
    spec = vps_server_spec(vps=vps, provider=provider)
    assert (spec.region, spec.size, spec.image) == ("r-acct", "s-acct", "i-acct")
    vps.region, vps.size = "r-vps", "s-vps"
    spec = vps_server_spec(vps=vps, provider=provider)
    assert (spec.region, spec.size, spec.image) == ("r-vps", "s-vps", "i-acct")
    vps.image = "i-vps"
    assert vps_server_spec(vps=vps, provider=provider).image == "i-vps"
