"""`re.match` with `$` accepts "value\\n": every validator matches the whole value, and nothing the
API stores ends in a newline (DRF trims surrounding whitespace first; the validators must not rely
on it: models, commands and the agent see untrimmed values)."""

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import ValidationError

from fleet.api.serializers import VpsCreateSerializer
from fleet.models import Vps, vps_name_validator
from sites.api.serializers import RepositorySerializer, SiteCreateSerializer
from sites.domains import InvalidDomain, normalize_domain
from sites.models import Site

VALIDATORS = [
    ("repository url", lambda v: RepositorySerializer().validate_url(v), "https://git.example.com/x\n"),
    ("branch", lambda v: RepositorySerializer().validate_branch(v), "main\n"),
    ("vps name (model)", vps_name_validator, "web-1\n"),
    ("php version", lambda v: SiteCreateSerializer().fields["php_version"].run_validators(v), "8.3\n"),
    ("vps region", lambda v: VpsCreateSerializer().fields["region"].run_validators(v), "nyc1\n"),
    ("vps size", lambda v: VpsCreateSerializer().fields["size"].run_validators(v), "s-1\n"),
]


@pytest.mark.parametrize(("what", "validate", "value"), VALIDATORS, ids=[v[0] for v in VALIDATORS])
def test_each_validator_refuses_a_trailing_newline(what, validate, value):
    with pytest.raises((ValidationError, DjangoValidationError, InvalidDomain)):
        validate(value)
    validate(value.rstrip("\n"))  # and accepts the same value without it


def test_a_domain_is_normalised_without_its_surrounding_whitespace():
    assert normalize_domain("Example.COM\n") == "example.com"
    with pytest.raises(InvalidDomain):
        normalize_domain("example.com\nevil.com")


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web", provider="manual", ip_address="192.0.2.1", status="active", php_versions=["8.2"]
    )


def test_nothing_the_api_stores_ends_in_a_newline(alice, vps):
    body = {
        "domain": "a.example.com\n",
        "type": "laravel",
        "php_version": "8.2\n",
        "aliases": ["www.example.com\n"],
        "repository": {"url": "https://git.example.com/x\n", "branch": "main\n"},
    }
    response = alice.client().post("/api/v1/sites", body, format="json")
    if response.status_code == 202:
        site = Site.objects.get()
        stored = [site.domain, site.php_version, *site.aliases, site.repository_url, site.repository_branch]
        assert not any("\n" in value for value in stored), stored
    else:
        assert response.status_code == 400
