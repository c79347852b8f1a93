"""The two limit questions, at the edges: may one more site be added, and is a tenant over its tier."""

import pytest

from chom import tiers
from chom.tiers import TIERS
from sites.selectors import tenant_may_add_site, tenant_over_limits


@pytest.mark.parametrize(
    ("count", "may_add", "over"),
    [(24, True, False), (25, False, False), (26, False, True)],  # max - 1, max, max + 1 (pro: 25)
)
def test_it_answers_both_questions_at_the_edges_of_the_limit(count, may_add, over):
    limit = TIERS["pro"].max_sites
    assert limit == 25
    assert tiers.may_add(count=count, limit=limit) is may_add
    assert tiers.is_over(count=count, limit=limit) is over


@pytest.mark.parametrize(("sites", "may_add", "over"), [(2, True, []), (3, False, []), (4, False, ["sites"])])
def test_site_creation_and_billing_ask_the_same_rule_of_real_rows(alice, sites, may_add, over, db):
    from fleet.models import Vps
    from sites.models import Site

    tenant = alice.tenant
    tenant.tier = "starter"  # max_sites = 3
    tenant.save()
    vps = Vps.objects.create(name="v", provider="manual", ip_address="192.0.2.1", status="active")
    for n in range(sites):
        Site.objects.create(
            tenant=tenant, vps=vps, domain=f"s{n}.example.com", type="static", unix_user=f"u{n}"
        )
    assert tenant_may_add_site(tenant) is may_add
    assert [problem.split(":")[0] for problem in tenant_over_limits(tenant)] == over
