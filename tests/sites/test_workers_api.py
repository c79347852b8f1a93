"""The workers API: validation, the tier's process ceiling, tenant scoping, the 202 operations,
Laravel's default queue worker, the agent's payload, and the status read from the VPS (here one
that cannot be reached: its failure is recorded, not raised)."""

import socket

import pytest
from django.test import Client
from django.utils import timezone

from chom.models import AuditEvent, Operation
from chom.operations import operation_execute
from fleet.models import Vps
from sites.models import Site, Worker
from sites.services import site_create
from sites.workers import workers_payload

QUEUE = ["php", "artisan", "queue:work", "--sleep=3", "--tries=3", "--max-time=3600"]


@pytest.fixture
def vps(db):
    return Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10,
        php_versions=["8.2"],
    )  # fmt: skip


def _site(persona, type_="php", domain="") -> Site:
    repository = {"url": "https://git.example/app.git", "branch": "main"} if type_ == "laravel" else None
    site, _, _ = site_create(
        tenant=persona.tenant, domain=domain or f"{type_}.example.com", type=type_, repository=repository
    )
    Site.objects.filter(pk=site.pk).update(status="active", current_release="r1")
    Operation.objects.all().delete()  # the create's deploy: not what these tests look at
    return Site.objects.get(pk=site.pk)


def _url(site, worker=None) -> str:
    return f"/api/v1/sites/{site.pk}/workers" + (
        f"/{worker.pk if hasattr(worker, 'pk') else worker}" if worker else ""
    )


def _post(persona, site, **body):
    return persona.client().post(
        _url(site), {"name": "jobs", "command": ["php", "worker.php"]} | body, format="json"
    )


def _fresh(site) -> None:
    """As if just read from the VPS: GETs do not go to the (unreachable) server."""
    site.workers.update(status_checked_at=timezone.now())


def test_it_gives_a_new_laravel_site_its_queue_worker_as_an_ordinary_worker(alice, vps):
    site = _site(alice, "laravel")
    worker = site.workers.get()
    assert (worker.name, worker.command, worker.processes, worker.restart, worker.enabled) == (
        "queue", QUEUE, 1, "always", True,
    )  # fmt: skip
    assert workers_payload(site) == {
        "name": site.unix_user,
        "workers": [{"name": "queue", "argv": QUEUE, "processes": 1, "restart": "always", "enabled": True}],
        "env": True,
        "restart": False,
        "suspended": False,
    }
    assert not _site(alice, "wordpress").workers.exists()
    _fresh(site)
    assert alice.client().delete(_url(site, worker)).status_code == 202  # deletable like any other
    assert not site.workers.exists()


def test_it_creates_a_worker_and_queues_the_operation_that_applies_the_sites_set(alice, vps):
    site = _site(alice)
    response = _post(alice, site, processes=2, restart="on-failure")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["name"], body["command"], body["processes"], body["restart"], body["enabled"]) == (
        "jobs", ["php", "worker.php"], 2, "on-failure", True,
    )  # fmt: skip
    assert body["status"]["state"] == "unknown"
    op = Operation.objects.get(id=body["operation"]["id"])
    assert (op.kind, op.status, op.target_id, op.params) == ("site.workers", "queued", str(site.pk), {})
    assert AuditEvent.objects.filter(action="site.worker_created", target=f"site:{site.domain}").exists()
    _fresh(site)
    listed = alice.client().get(_url(site)).json()
    assert listed["count"] == 1 and [w["name"] for w in listed["results"]] == ["jobs"]
    assert workers_payload(site)["env"] is True
    assert workers_payload(_site(alice, "static", "static.example.com"))["env"] is False


def test_it_changes_and_deletes_a_worker_each_through_an_operation(alice, vps):
    site = _site(alice)
    worker_id = _post(alice, site).json()["id"]
    response = alice.client().patch(_url(site, worker_id), {"enabled": False, "processes": 3}, format="json")
    assert response.status_code == 202, response.content
    worker = Worker.objects.get(pk=worker_id)
    assert (worker.enabled, worker.processes, worker.command) == (False, 3, ["php", "worker.php"])
    response = alice.client().delete(_url(site, worker_id))
    assert response.status_code == 202, response.content
    assert Operation.objects.get(id=response.json()["operation"]["id"]).kind == "site.workers"
    assert not Worker.objects.filter(pk=worker_id).exists()
    assert Operation.objects.filter(kind="site.workers").count() == 3


INVALID = {
    "name with upper case": {"name": "Jobs"},
    "name starting with a digit": {"name": "1jobs"},
    "name too long": {"name": "a" * 41},
    "name with a dot": {"name": "../x"},
    "command not a list": {"command": "php worker.php"},
    "empty command": {"command": []},
    "51 arguments": {"command": ["php"] * 51},
    "an argument of 1001 characters": {"command": ["php", "x" * 1001]},
    "NUL": {"command": ["php", "a\x00b"]},
    "newline": {"command": ["php", "a\nExecStartPre=/bin/sh"]},
    "carriage return": {"command": ["php", "a\rb"]},
    "empty program": {"command": ["", "x"]},
    "an argument that is not text": {"command": ["php", {"x": 1}]},
    "zero processes": {"processes": 0},
    "processes not a number": {"processes": "many"},
    "unknown restart policy": {"restart": "sometimes"},
}


@pytest.mark.parametrize("body", list(INVALID.values()), ids=list(INVALID))
def test_it_refuses_invalid_workers_in_the_one_error_shape_and_saves_nothing(alice, vps, body):
    site = _site(alice)
    response = _post(alice, site, **body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and set(error["fields"]) <= {
        "name",
        "command",
        "processes",
        "restart",
    }
    assert not site.workers.exists() and not Operation.objects.exists()


def test_it_holds_all_of_a_sites_workers_to_the_tiers_process_ceiling(alice, charlie, vps):
    site = _site(alice)  # pro: 4 processes per site
    assert _post(alice, site, processes=5).status_code == 403
    assert _post(alice, site, processes=3).status_code == 202
    refused = _post(alice, site, name="more", processes=2)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "tier_limit_reached"
    assert _post(alice, site, name="more", processes=1).status_code == 202
    worker = site.workers.get(name="jobs")
    assert alice.client().patch(_url(site, worker), {"processes": 4}, format="json").status_code == 403
    assert alice.client().patch(_url(site, worker), {"processes": 2}, format="json").status_code == 202
    assert Worker.objects.get(pk=worker.pk).processes == 2
    theirs = _site(charlie, domain="starter.example.com")  # starter: 1
    assert _post(charlie, theirs, processes=2).status_code == 403
    assert _post(charlie, theirs).status_code == 202


def test_it_refuses_a_second_worker_of_the_same_name(alice, vps):
    site = _site(alice)
    assert _post(alice, site).status_code == 202
    response = _post(alice, site)
    assert response.status_code == 409 and response.json()["error"]["fields"]["name"]
    other = _post(alice, site, name="other").json()["id"]
    assert alice.client().patch(_url(site, other), {"name": "jobs"}, format="json").status_code == 409


def test_it_shows_another_tenants_workers_to_no_one_but_them(alice, charlie, vps):
    site = _site(alice)
    worker_id = _post(alice, site).json()["id"]
    _fresh(site)
    theirs = _site(charlie, domain="globex.example.com")
    for method, url in [
        ("get", _url(site)), ("post", _url(site)), ("get", _url(site, worker_id)),
        ("patch", _url(site, worker_id)), ("delete", _url(site, worker_id)),
        ("get", _url(theirs, worker_id)), ("patch", _url(theirs, worker_id)),
        ("delete", _url(theirs, worker_id)),
    ]:  # fmt: skip
        response = getattr(charlie.client(), method)(url, {"enabled": False}, format="json")
        assert response.status_code == 404, (method, url, response.content)
    assert Worker.objects.get(pk=worker_id).enabled is True
    # One of alice's sites does not reach the workers of another of hers either.
    second = _site(alice, domain="second.example.com")
    assert alice.client().get(_url(second, worker_id)).status_code == 404


def test_it_records_why_the_state_could_not_be_read_and_tries_again_only_once_stale(alice, vps, settings):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the connection is refused at once
    Vps.objects.filter(pk=vps.pk).update(ip_address="127.0.0.1", ssh_port=port)
    site = _site(alice)
    worker_id = _post(alice, site).json()["id"]
    status = alice.client().get(_url(site, worker_id)).json()["status"]
    assert status["error"] and status["checked_at"]
    assert status["state"] == "down" and status["running"] == 0
    checked = Worker.objects.get(pk=worker_id).status_checked_at
    assert alice.client().get(_url(site)).json()["results"][0]["status"]["checked_at"] == status["checked_at"]
    assert Worker.objects.get(pk=worker_id).status_checked_at == checked  # fresh: not read again
    settings.WORKER_STATUS_MAX_AGE = 0
    alice.client().get(_url(site))
    assert Worker.objects.get(pk=worker_id).status_checked_at > checked


def test_it_applies_nothing_on_a_site_that_has_no_release_yet(alice, vps):
    site = _site(alice)
    Site.objects.filter(pk=site.pk).update(current_release="")
    op_id = _post(alice, site).json()["operation"]["id"]
    operation_execute(operation_id=op_id)
    op = Operation.objects.get(id=op_id)
    assert (op.status, op.result) == ("succeeded", {"applied": False})


def test_the_site_page_lists_the_workers_with_their_last_state_for_staff(admin_user, alice, vps):
    site = _site(alice, "laravel")
    reading = {"running": 1, "restarts": 2, "last_exit": {"kind": "signal", "status": 9}, "error": ""}
    site.workers.update(status=reading, status_checked_at=timezone.now())
    Worker.objects.create(site=site, name="off", command=["node", "server.js"], enabled=False)
    client = Client()
    client.force_login(admin_user)
    page = client.get(f"/sites/{site.pk}/").content.decode()
    assert '<h2 id="workers">Workers</h2>' in page
    assert "php artisan queue:work --sleep=3 --tries=3 --max-time=3600" in page
    assert "1 of 1" in page and "signal 9" in page and "node server.js" in page and "disabled" in page
    client.force_login(alice.user)
    assert client.get(f"/sites/{site.pk}/").status_code == 302  # staff only
