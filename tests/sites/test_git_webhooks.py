"""Push-to-deploy: the management endpoint (`/api/v1/sites/{id}/webhook`) and the public receiver
(`/webhooks/git/{hook id}`) as GitHub, GitLab and Gitea/Forgejo call it."""

import hashlib
import hmac
import json
import uuid

import pytest
from django.db import connection
from django.test import Client

from chom.models import AuditEvent, Operation, Tenant
from fleet.models import Vps
from sites import webhooks
from sites.models import Site, SiteWebhook


@pytest.fixture
def site(acme):
    vps = Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10
    )
    return Site.objects.create(
        tenant=acme[0], vps=vps, domain="shop.example.com", type="static", status="active",
        unix_user="site1", repository_url="https://git.example.com/acme/shop.git",
        repository_branch="main", current_release="r1",
    )  # fmt: skip


def _hook(persona, site) -> dict:
    response = persona.client().post(f"/api/v1/sites/{site.pk}/webhook")
    assert response.status_code == 200, response.content
    return response.json()


def _path(hook: dict) -> str:
    return "/webhooks/git/" + hook["url"].rsplit("/", 1)[1]


def _push(ref="refs/heads/main", after="a" * 40) -> bytes:
    return json.dumps({"ref": ref, "after": after, "commits": []}).encode()


def _sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(hook, body, *, event="push", delivery=None, secret=None):
    signature = "sha256=" + _sign(secret or hook["secret"], body)
    return Client().post(
        _path(hook),
        body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=signature,
        HTTP_X_GITHUB_EVENT=event,
        HTTP_X_GITHUB_DELIVERY=delivery or str(uuid.uuid4()),
    )


def gitlab(hook, body, *, event="Push Hook", delivery=None, secret=None):
    return Client().post(
        _path(hook),
        body,
        content_type="application/json",
        HTTP_X_GITLAB_TOKEN=secret or hook["secret"],
        HTTP_X_GITLAB_EVENT=event,
        HTTP_X_GITLAB_EVENT_UUID=delivery or str(uuid.uuid4()),
    )


def gitea(hook, body, *, host="Gitea", event="push", delivery=None, secret=None):
    headers = {
        f"HTTP_X_{host.upper()}_SIGNATURE": _sign(secret or hook["secret"], body),
        f"HTTP_X_{host.upper()}_EVENT": event,
        f"HTTP_X_{host.upper()}_DELIVERY": delivery or str(uuid.uuid4()),
    }
    return Client().post(_path(hook), body, content_type="application/json", **headers)


def forgejo(hook, body, **kwargs):
    return gitea(hook, body, host="Forgejo", **kwargs)


PROVIDERS = [github, gitlab, gitea, forgejo]


def _deploys(site) -> list[Operation]:
    return list(Operation.objects.filter(kind="site.deploy", target_id=str(site.pk)))


@pytest.mark.parametrize("send", PROVIDERS, ids=lambda f: f.__name__)
def test_it_deploys_a_signed_push_to_the_sites_branch(alice, site, send):
    hook = _hook(alice, site)
    response = send(hook, _push())
    assert response.status_code == 202, response.content
    (op,) = _deploys(site)
    assert response.json()["operation"]["id"] == str(op.id)
    assert (op.status, op.tenant, op.requested_by_tenant) == ("queued", alice.tenant, True)
    event = AuditEvent.objects.get(action="site.push_received")
    assert event.data["provider"] == send.__name__ and event.data["commit"] == "a" * 40


@pytest.mark.parametrize("send", PROVIDERS, ids=lambda f: f.__name__)
def test_it_refuses_a_bad_signature_with_401_and_deploys_nothing(alice, site, send):
    hook = _hook(alice, site)
    response = send(hook, _push(), secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert _deploys(site) == []
    assert not AuditEvent.objects.filter(action="site.push_received").exists()


def test_it_refuses_a_delivery_without_any_signature(alice, site):
    hook = _hook(alice, site)
    response = Client().post(
        _path(hook), _push(), content_type="application/json", HTTP_X_GITHUB_EVENT="push"
    )
    assert response.status_code == 401 and _deploys(site) == []


def test_it_refuses_a_body_signed_for_another_body(alice, site):
    hook = _hook(alice, site)
    signature = "sha256=" + _sign(hook["secret"], _push(after="b" * 40))
    response = Client().post(
        _path(hook), _push(), content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=signature, HTTP_X_GITHUB_EVENT="push",
    )  # fmt: skip
    assert response.status_code == 401 and _deploys(site) == []


def test_it_answers_an_unknown_hook_as_a_bad_signature(alice, site):
    hook = _hook(alice, site) | {"url": "http://testserver/webhooks/git/no-such-hook"}
    assert github(hook, _push()).status_code == 401


@pytest.mark.parametrize("send", PROVIDERS, ids=lambda f: f.__name__)
def test_it_ignores_a_push_to_another_branch(alice, site, send):
    hook = _hook(alice, site)
    response = send(hook, _push(ref="refs/heads/feature"))
    assert response.status_code == 200
    assert "refs/heads/main" in response.json()["ignored"]
    assert _deploys(site) == []


def test_it_ignores_a_tag_push_and_a_deleted_branch(alice, site):
    hook = _hook(alice, site)
    assert github(hook, _push(ref="refs/tags/main")).status_code == 200
    assert github(hook, _push(after="0" * 40)).status_code == 200
    assert _deploys(site) == []


@pytest.mark.parametrize(
    ("send", "event"),
    [(github, "ping"), (github, "issues"), (gitlab, "Tag Push Hook"), (gitea, "create")],
    ids=["github-ping", "github-issues", "gitlab-tag", "gitea-create"],
)
def test_it_ignores_other_events_with_2xx(alice, site, send, event):
    hook = _hook(alice, site)
    response = send(hook, json.dumps({"zen": "hi", "hook_id": 1}).encode(), event=event)
    assert response.status_code == 200
    assert event in response.json()["ignored"]
    assert _deploys(site) == []


def test_it_deploys_the_same_delivery_once(alice, site):
    hook = _hook(alice, site)
    first = github(hook, _push(), delivery="d-1")
    Operation.objects.update(status="succeeded")  # the first deploy ran: no queued one to join
    again = github(hook, _push(), delivery="d-1")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["duplicate"] is True
    assert again.json()["operation"]["id"] == first.json()["operation"]["id"]
    assert len(_deploys(site)) == 1
    assert AuditEvent.objects.filter(action="site.push_received").count() == 1


def test_it_collapses_a_burst_of_pushes_into_the_queued_deploy(alice, site):
    hook = _hook(alice, site)
    answers = [github(hook, _push(after=f"{i:040x}")) for i in range(1, 11)]
    assert {a.status_code for a in answers} == {202}
    (op,) = _deploys(site)
    assert {a.json()["operation"]["id"] for a in answers} == {str(op.id)}
    assert [a.json()["collapsed"] for a in answers] == [False] + [True] * 9


def test_it_queues_a_new_deploy_once_the_queued_one_started(alice, site):
    hook = _hook(alice, site)
    github(hook, _push(after="1" * 40))
    Operation.objects.update(status="running")  # it fetched the branch head before this push
    response = github(hook, _push(after="2" * 40))
    assert response.status_code == 202 and response.json()["collapsed"] is False
    assert sorted(op.status for op in _deploys(site)) == ["queued", "running"]


def test_it_answers_429_when_the_tenants_operation_cap_is_reached(alice, site):
    Tenant.objects.filter(pk=alice.tenant.pk).update(tier="starter")
    cap = Tenant.objects.get(pk=alice.tenant.pk).limits.max_pending_operations
    for _ in range(cap):
        Operation.objects.create(kind="site.ssl", tenant=alice.tenant, requested_by_tenant=True)
    hook = _hook(alice, site)
    response = github(hook, _push(), delivery="d-cap")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_operations"
    assert _deploys(site) == []
    Operation.objects.update(status="succeeded")  # slots free up: the host's retry is not a duplicate
    assert github(hook, _push(), delivery="d-cap").status_code == 202


def test_it_refuses_an_oversized_body_with_413(alice, site, monkeypatch):
    monkeypatch.setattr(webhooks, "MAX_BODY_BYTES", 100)
    hook = _hook(alice, site)
    response = github(hook, _push() + b" " * 200)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert _deploys(site) == []


def test_it_accepts_githubs_form_encoded_payload(alice, site):
    hook = _hook(alice, site)
    from urllib.parse import urlencode

    body = urlencode({"payload": _push().decode()}).encode()
    response = Client().post(
        _path(hook), body, content_type="application/x-www-form-urlencoded",
        HTTP_X_HUB_SIGNATURE_256="sha256=" + _sign(hook["secret"], body),
        HTTP_X_GITHUB_EVENT="push", HTTP_X_GITHUB_DELIVERY="form-1",
    )  # fmt: skip
    assert response.status_code == 202, response.content


def test_it_invalidates_the_old_secret_on_rotation(alice, site):
    old = _hook(alice, site)
    new = _hook(alice, site)
    assert new["url"] == old["url"] and new["secret"] != old["secret"]
    assert github(old, _push()).status_code == 401
    assert github(new, _push()).status_code == 202
    assert AuditEvent.objects.filter(action="site.webhook_rotated").count() == 1


def test_it_removes_the_hook_on_delete(alice, site):
    hook = _hook(alice, site)
    assert alice.client().delete(f"/api/v1/sites/{site.pk}/webhook").status_code == 204
    assert github(hook, _push()).status_code == 401
    assert not SiteWebhook.objects.exists()
    assert alice.client().delete(f"/api/v1/sites/{site.pk}/webhook").status_code == 204


def test_it_lets_a_member_set_the_hook_but_not_a_viewer(bob, victor, site):
    assert bob.client().post(f"/api/v1/sites/{site.pk}/webhook").status_code == 200
    assert victor.client().post(f"/api/v1/sites/{site.pk}/webhook").status_code == 403


def test_it_answers_404_for_another_tenants_site(charlie, site):
    assert charlie.client().post(f"/api/v1/sites/{site.pk}/webhook").status_code == 404
    assert charlie.client().delete(f"/api/v1/sites/{site.pk}/webhook").status_code == 404
    assert not SiteWebhook.objects.exists()


def test_it_refuses_a_hook_for_a_site_without_a_repository(alice, site):
    Site.objects.filter(pk=site.pk).update(repository_url="")
    response = alice.client().post(f"/api/v1/sites/{site.pk}/webhook")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_repository"


def test_it_stores_the_secret_encrypted(alice, site):
    hook = _hook(alice, site)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret, hook_id FROM sites_sitewebhook")
        raw, hook_id = cursor.fetchone()
    assert hook["secret"] not in raw
    assert SiteWebhook.objects.get().secret == hook["secret"]
    assert str(site.pk) != hook_id and len(hook_id) >= 32


def test_it_keeps_a_bounded_number_of_delivery_ids(alice, site, monkeypatch):
    from sites import services

    monkeypatch.setattr(services, "WEBHOOK_DELIVERIES_KEPT", 3)
    hook = _hook(alice, site)
    for i in range(5):
        github(hook, _push(), delivery=f"d-{i}")
    kept = SiteWebhook.objects.get().deliveries.values_list("delivery_id", flat=True)
    assert sorted(kept) == ["d-2", "d-3", "d-4"]


def test_it_answers_a_push_to_a_suspended_site_with_the_json_refusal(alice, site):
    hook = _hook(alice, site)
    Site.objects.filter(pk=site.pk).update(status="suspended")
    response = github(hook, _push())
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "site_suspended"
    assert _deploys(site) == []


def test_it_takes_gitlabs_request_id_as_the_delivery_id_when_no_event_uuid(alice, site):
    hook = _hook(alice, site)
    headers = {"HTTP_X_GITLAB_TOKEN": hook["secret"], "HTTP_X_GITLAB_EVENT": "Push Hook"}
    for _ in range(2):
        Operation.objects.update(status="succeeded")
        response = Client().post(
            _path(hook), _push(), content_type="application/json", HTTP_X_REQUEST_ID="r-1", **headers
        )
    assert response.status_code == 200 and response.json()["duplicate"] is True
    assert len(_deploys(site)) == 1
