"""The staff's audit log page: filters by actor, tenant, action, target and date; pages; every
target with a page in the dashboard links to it, the rest show as text."""

import html
from datetime import timedelta

import pytest
from django.utils import timezone

from backups.models import Backup
from chom.models import AuditEvent
from chom.services import audit_record, tenant_create, user_get_or_create
from fleet.services import vps_create
from observability.services import alert_raise
from sites.models import Site


@pytest.fixture
def ops(db):
    return user_get_or_create(email="ops@chom.test", is_staff=True)


@pytest.fixture
def dashboard(client, ops):
    client.force_login(ops)
    return client


def _rows(client, query: str = "") -> list[tuple[str, str]]:
    """(action, target) of each row shown."""
    page = client.get(f"/audit/{query}")
    assert page.status_code == 200
    return [(event.action, event.target) for event, _ in page.context["rows"]]


def _links(client, query: str = "") -> dict[str, str | None]:
    return {event.target: url for event, url in client.get(f"/audit/{query}").context["rows"]}


def _at(days_ago: int, **fields) -> AuditEvent:
    event = audit_record(**fields)
    AuditEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    return event


def test_it_filters_by_actor_tenant_action_target_and_date(dashboard, ops):
    acme, _ = tenant_create(slug="acme", tier="pro", owner_email="alice@acme.test")
    bob = user_get_or_create(email="bob@chom.test", is_staff=True)
    AuditEvent.objects.all().delete()
    _at(20, action="site.created", actor=ops, tenant=acme, target="site:shop.acme.test")
    _at(10, action="site.suspended", actor=bob, tenant=acme, target="site:shop.acme.test")
    _at(5, action="vps.created", actor=ops, target="vps:web-1")
    _at(1, action="vps.updated", actor=bob, target="vps:web-2")
    assert _rows(dashboard) == [
        ("vps.updated", "vps:web-2"),
        ("vps.created", "vps:web-1"),
        ("site.suspended", "site:shop.acme.test"),
        ("site.created", "site:shop.acme.test"),
    ]
    assert [a for a, _ in _rows(dashboard, "?actor=bob@")] == ["vps.updated", "site.suspended"]
    assert [a for a, _ in _rows(dashboard, "?tenant=acme")] == ["site.suspended", "site.created"]
    assert [a for a, _ in _rows(dashboard, "?action=site.")] == ["site.suspended", "site.created"]
    assert [a for a, _ in _rows(dashboard, "?action=vps.created")] == ["vps.created"]
    assert [t for _, t in _rows(dashboard, "?target=web-2")] == ["vps:web-2"]
    since, until = (timezone.now() - timedelta(days=d) for d in (12, 4))
    assert [a for a, _ in _rows(dashboard, f"?since={since:%Y-%m-%d}&until={until:%Y-%m-%d}")] == [
        "vps.created",
        "site.suspended",
    ]
    assert _rows(dashboard, "?actor=bob@&tenant=acme") == [("site.suspended", "site:shop.acme.test")]


def test_it_links_every_target_to_its_page(dashboard, ops):
    acme, _ = tenant_create(slug="acme", tier="pro", owner_email="alice@acme.test")
    vps, op = vps_create(name="web-1", provider="manual", ip_address="192.0.2.10", actor=ops)
    site = Site.objects.create(tenant=acme, vps=vps, domain="shop.acme.test", type="static", status="active")
    backup = Backup.objects.create(site=site, status="succeeded")
    alert = alert_raise(name="vps_unreachable", key="web-1", summary="web-1 does not answer SSH")
    for target in [f"site:{site.domain}", f"backup:{backup.pk}", f"operation:{op.id}", f"alert:{alert.pk}",
                   "silence:6f1b3a3e-0000-4000-8000-000000000000"]:  # fmt: skip
        audit_record(action="test.linked", actor=ops, target=target)
    links = _links(dashboard)
    assert links["vps:web-1"] == f"/fleet/{vps.pk}/"
    assert links["tenant:acme"] == "/tenants/acme/"
    assert links["site:shop.acme.test"] == f"/sites/{site.pk}/"
    assert links[f"backup:{backup.pk}"] == f"/backups/{backup.pk}/"
    assert links[f"operation:{op.id}"] == f"/operations/{op.id}/"
    assert links[f"alert:{alert.pk}"] == f"/observability/alerts/{alert.pk}/"
    assert links["silence:6f1b3a3e-0000-4000-8000-000000000000"] == (
        "/observability/silences/?state=all#silence-6f1b3a3e-0000-4000-8000-000000000000"
    )
    page = html.unescape(dashboard.get("/audit/").content.decode())
    assert f'<a href="/fleet/{vps.pk}/">vps:web-1</a>' in page
    for url in filter(None, links.values()):
        assert dashboard.get(url.split("#")[0]).status_code == 200, url


def test_it_shows_a_target_without_a_page_as_text(dashboard, ops):
    acme, _ = tenant_create(slug="acme", tier="pro", owner_email="alice@acme.test")
    vps, _ = vps_create(name="web-1", provider="manual", ip_address="192.0.2.10", actor=ops)
    Site.objects.create(tenant=acme, vps=vps, domain="gone.acme.test", type="static", status="deleted")
    for target in ["site:gone.acme.test", "vps:never-existed", "token:chom_ab12", "user:bob@chom.test",
                   "operation:not-a-uuid", "alert:12345", "nonsense", ""]:  # fmt: skip
        audit_record(action="test.unlinked", actor=ops, target=target)
    links = _links(dashboard, "?action=test.unlinked")
    assert set(links.values()) == {None}
    page = dashboard.get("/audit/?action=test.unlinked").content.decode()
    assert "<td>token:chom_ab12</td>" in page and "<td>—</td>" in page


def test_it_pages_through_the_log_keeping_the_filters(dashboard, ops):
    for n in range(55):
        audit_record(action="site.updated", actor=ops, target=f"site:s{n}.test")
    audit_record(action="vps.updated", actor=ops, target="vps:web-1")
    first = dashboard.get("/audit/?action=site.").content.decode()
    assert "page 1 of 2" in first and 'href="?action=site.&page=2"' in first
    second = dashboard.get("/audit/?action=site.&page=2")
    assert len(second.context["rows"]) == 5
    assert {event.action for event, _ in second.context["rows"]} == {"site.updated"}


def test_it_shows_a_filter_it_cannot_read_and_leaves_it_out(dashboard, ops):
    audit_record(action="vps.updated", actor=ops, target="vps:web-1")
    page = dashboard.get("/audit/?since=last-tuesday&action=vps.")
    assert [event.action for event, _ in page.context["rows"]] == ["vps.updated"]
    assert "Enter a valid date." in page.content.decode()


def test_the_cancel_and_retry_of_an_operation_show_in_the_log_with_links(dashboard, ops):
    _, op = vps_create(name="web-1", provider="manual", ip_address="192.0.2.10", actor=ops)
    dashboard.post(f"/operations/{op.id}/cancel")
    dashboard.post(f"/operations/{op.id}/retry")
    assert _rows(dashboard, "?action=operation.") == [
        ("operation.retried", f"operation:{op.id}"),
        ("operation.cancelled", f"operation:{op.id}"),
    ]
    page = dashboard.get("/audit/?action=operation.").content.decode()
    assert page.count(f'<a href="/operations/{op.id}/">operation:{op.id}</a>') == 2


def test_only_staff_see_the_audit_log(client, db):
    client.force_login(user_get_or_create(email="alice@acme.test"))
    response = client.get("/audit/")
    assert response.status_code == 302 and "login" in response["Location"]
