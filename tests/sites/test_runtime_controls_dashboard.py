"""The site page's runtime controls (staff): each form goes through the API's checks and service,
queues the operation the API would, and comes back to the site page; a hostile value is shown as
a refusal there and nothing is saved or queued."""

import pytest
from django.test import Client

from chom.models import AuditEvent, Operation
from fleet.models import Vps
from sites.models import BasicAuthUser, CronJob, Redirect, ResponseHeader, Site, Worker
from sites.runtime import password_hash
from sites.runtime_forms import argv_lines


@pytest.fixture
def site(alice, db):
    vps = Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status="active", max_sites=10,
        php_versions=["8.2"],
    )  # fmt: skip
    return Site.objects.create(
        tenant=alice.tenant, vps=vps, domain="shop.example.com", type="php", php_version="8.2",
        status="active", unix_user="site1", current_release="r1",
    )  # fmt: skip


def _page(site) -> str:
    return f"http://testserver/sites/{site.pk}/"


def _queued(response, site, kind: str, section: str, admin_user) -> Operation:
    """The one operation queued, by staff (not counted against the tenant), and the redirect back
    to the site page's section."""
    op = Operation.objects.get()
    assert (op.kind, op.status, op.target_id) == (kind, "queued", str(site.pk))
    assert (op.created_by, op.requested_by_tenant) == (admin_user, False)
    assert response.status_code == 302 and response["Location"] == f"/sites/{site.pk}/#{section}"
    return op


def _refused(client, response, site) -> list[str]:
    """Back to the page it came from, nothing queued; the messages shown there."""
    assert response.status_code == 302 and response["Location"] == _page(site)
    assert not Operation.objects.exists()
    return [str(m) for m in client.get(_page(site)).context["messages"]]


def _post(client, site, path: str, body: dict):
    return client.post(f"/sites/{site.pk}/{path}", body, HTTP_REFERER=_page(site))


# --- the command textarea --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "argv"),
    [
        ("php\r\nartisan\r\nschedule:run\r\n", ["php", "artisan", "schedule:run"]),
        ("echo\nhello world\n\n", ["echo", "hello world"]),
        ("printf\n %s \n", ["printf", " %s "]),
    ],
)
def test_it_reads_one_argument_per_line_as_typed(typed, argv):
    assert argv_lines(typed) == argv


def test_it_refuses_a_blank_line_between_arguments():
    with pytest.raises(Exception, match="Line 2 is blank"):
        argv_lines("php\n\nartisan")


# --- cron jobs -------------------------------------------------------------------------------------


def test_it_adds_a_cron_job_and_queues_its_operation(admin_client, admin_user, site):
    response = _post(
        admin_client,
        site,
        "cron-jobs/new",
        {"schedule": " */5  * * * * ", "command": "php\r\nartisan\r\ninspire"},
    )
    _queued(response, site, "site.cron", "cron-jobs", admin_user)
    job = CronJob.objects.get()
    assert (job.schedule, job.command, job.enabled) == ("*/5 * * * *", ["php", "artisan", "inspire"], True)
    assert AuditEvent.objects.get(action="site.cron_job_created").actor == admin_user
    shown = [str(m) for m in admin_client.get(_page(site)).context["messages"]]
    assert shown == ["Cron job */5 * * * * added. site.cron is queued."]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"schedule": "61 * * * *", "command": "true"}, "Schedule: The minute field takes 0-59, not 61."),
        ({"schedule": "* * * * *; rm -rf /", "command": "true"}, "five fields"),
        ({"schedule": "@hourly", "command": "echo\nok\rINJECTED"}, "line breaks"),
        ({"schedule": "@hourly", "command": "echo\n\nok"}, "Line 2 is blank"),
        ({"schedule": "@hourly", "command": ""}, "Command: This field is required."),
    ],
)
def test_it_refuses_a_hostile_cron_job_and_queues_nothing(admin_client, site, body, message):
    shown = _refused(admin_client, _post(admin_client, site, "cron-jobs/new", body), site)
    assert len(shown) == 1 and message.lower() in shown[0].lower(), shown
    assert not CronJob.objects.exists()


def test_it_refuses_a_cron_job_beyond_the_tier(admin_client, site):
    for _ in range(site.tenant.limits.cron_jobs_max):
        CronJob.objects.create(site=site, schedule="@daily", command=["true"])
    shown = _refused(
        admin_client,
        _post(admin_client, site, "cron-jobs/new", {"schedule": "@daily", "command": "true"}),
        site,
    )
    assert shown == ["The pro tier allows 20 cron jobs per site and this site has 20."]


def test_it_disables_enables_and_deletes_a_cron_job(admin_client, admin_user, site):
    job = CronJob.objects.create(site=site, schedule="@hourly", command=["true"])
    response = _post(admin_client, site, f"cron-jobs/{job.pk}/enabled", {"enabled": "false"})
    _queued(response, site, "site.cron", "cron-jobs", admin_user)
    job.refresh_from_db()
    assert job.enabled is False
    Operation.objects.all().delete()
    _post(admin_client, site, f"cron-jobs/{job.pk}/enabled", {"enabled": "true"})
    job.refresh_from_db()
    assert job.enabled is True
    Operation.objects.all().delete()
    _queued(
        _post(admin_client, site, f"cron-jobs/{job.pk}/delete", {}),
        site,
        "site.cron",
        "cron-jobs",
        admin_user,
    )
    assert not CronJob.objects.exists()


def test_it_refuses_an_enabled_value_that_is_neither_and_changes_nothing(admin_client, site):
    job = CronJob.objects.create(site=site, schedule="@hourly", command=["true"], enabled=False)
    shown = _refused(
        admin_client, _post(admin_client, site, f"cron-jobs/{job.pk}/enabled", {"enabled": "yes"}), site
    )
    assert len(shown) == 1 and "valid choice" in shown[0]
    job.refresh_from_db()
    assert job.enabled is False


def test_it_changes_no_cron_job_of_another_site(admin_client, site, charlie):
    theirs = Site.objects.create(
        tenant=charlie.tenant, vps=site.vps, domain="globex.example.com", type="static"
    )
    job = CronJob.objects.create(site=theirs, schedule="@hourly", command=["true"])
    _refused(admin_client, _post(admin_client, site, f"cron-jobs/{job.pk}/delete", {}), site)
    assert CronJob.objects.filter(pk=job.pk).exists()


# --- workers ---------------------------------------------------------------------------------------


def test_it_adds_a_worker_and_queues_its_operation(admin_client, admin_user, site):
    body = {"name": "queue", "command": "php\nartisan\nqueue:work", "processes": "2", "restart": "on-failure"}
    _queued(_post(admin_client, site, "workers/new", body), site, "site.workers", "workers", admin_user)
    worker = Worker.objects.get()
    assert (worker.name, worker.command, worker.processes, worker.restart, worker.enabled) == (
        "queue", ["php", "artisan", "queue:work"], 2, "on-failure", True
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"name": "../etc", "command": "sleep\n60", "processes": "1", "restart": "always"},
            "Name: This value does not match",
        ),
        ({"name": "q", "command": "sleep\n60", "processes": "5", "restart": "always"}, "tier allows 4"),
        ({"name": "q", "command": "sleep\n60", "processes": "1", "restart": "never"}, "valid choice"),
        ({"name": "q", "command": "sleep\n6\r0", "processes": "1", "restart": "always"}, "line breaks"),
    ],
)
def test_it_refuses_a_hostile_worker_and_queues_nothing(admin_client, site, body, message):
    shown = _refused(admin_client, _post(admin_client, site, "workers/new", body), site)
    assert len(shown) == 1 and message.lower() in shown[0].lower(), shown
    assert not Worker.objects.exists()


def test_it_disables_and_deletes_a_worker(admin_client, admin_user, site):
    worker = Worker.objects.create(site=site, name="queue", command=["sleep", "60"])
    response = _post(admin_client, site, f"workers/{worker.pk}/enabled", {"enabled": "false"})
    _queued(response, site, "site.workers", "workers", admin_user)
    worker.refresh_from_db()
    assert worker.enabled is False
    Operation.objects.all().delete()
    _queued(
        _post(admin_client, site, f"workers/{worker.pk}/delete", {}),
        site,
        "site.workers",
        "workers",
        admin_user,
    )
    assert not Worker.objects.exists()


# --- redirects and headers -------------------------------------------------------------------------


def test_it_adds_a_redirect_and_queues_its_operation(admin_client, admin_user, site):
    body = {
        "source": "/old/",
        "match": "prefix",
        "destination": "https://new.example/x",
        "status_code": "308",
    }
    _queued(_post(admin_client, site, "redirects/new", body), site, "site.runtime", "redirects", admin_user)
    row = Redirect.objects.get()
    assert (row.source, row.match, row.destination, row.status_code, row.preserve_query) == (
        "/old", "prefix", "https://new.example/x", 308, False
    )  # fmt: skip


@pytest.mark.parametrize(
    ("source", "destination", "message"),
    [
        ("/old", "https://new.example/$host", "no $"),
        ("/old", 'https://new.example/";return 200 "x', "no $, quotes"),
        ("/old;}", "/new", "A path starts with /"),
        ("/../etc", "/new", "no '..'"),
        ("/.well-known/acme-challenge", "/new", "ACME"),
        ("/old", "javascript:alert(1)", "http(s) URL"),
    ],
)
def test_it_refuses_a_hostile_redirect_and_queues_nothing(admin_client, site, source, destination, message):
    body = {"source": source, "match": "exact", "destination": destination, "status_code": "301",
            "preserve_query": "on"}  # fmt: skip
    shown = _refused(admin_client, _post(admin_client, site, "redirects/new", body), site)
    assert len(shown) == 1 and message in shown[0], shown
    assert not Redirect.objects.exists()


def test_it_deletes_a_redirect(admin_client, admin_user, site):
    row = Redirect.objects.create(site=site, source="/gone", destination="/here")
    _queued(
        _post(admin_client, site, f"redirects/{row.pk}/delete", {}),
        site,
        "site.runtime",
        "redirects",
        admin_user,
    )
    assert not Redirect.objects.exists()


def test_it_adds_a_header_and_queues_its_operation(admin_client, admin_user, site):
    body = {"name": "X-Robots-Tag", "value": "noindex, nofollow"}
    _queued(
        _post(admin_client, site, "headers/new", body), site, "site.runtime", "response-headers", admin_user
    )
    assert list(ResponseHeader.objects.values_list("name", "value")) == [
        ("X-Robots-Tag", "noindex, nofollow")
    ]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("X-Test", "a\r\nSet-Cookie: x=1", "control characters"),
        ("X-Test", "$host", "without $"),
        ("X-Test", 'a"; add_header X-Evil 1; "', None),  # quoted in the vhost: a value, not syntax
        ("X-Test", "caf\u00e9", "printable ASCII"),
        ("X-Test;", "1", "letters, digits and -"),
        ("Set-Cookie", "a=1", "set by nginx or CHOM"),
    ],
)
def test_it_refuses_a_hostile_header_and_queues_nothing(admin_client, site, name, value, message):
    response = _post(admin_client, site, "headers/new", {"name": name, "value": value})
    if message is None:  # the API accepts it too: rendered inside quotes with " escaped
        assert response.status_code == 302 and Operation.objects.get().kind == "site.runtime"
        return
    shown = _refused(admin_client, response, site)
    assert len(shown) == 1 and message in shown[0], shown
    assert not ResponseHeader.objects.exists()


def test_it_deletes_a_header(admin_client, admin_user, site):
    row = ResponseHeader.objects.create(site=site, name="X-Old", value="1")
    response = _post(admin_client, site, f"headers/{row.pk}/delete", {})
    _queued(response, site, "site.runtime", "response-headers", admin_user)
    assert not ResponseHeader.objects.exists()


# --- basic auth ------------------------------------------------------------------------------------


def test_it_adds_a_basic_auth_user_keeping_only_a_hash(admin_client, admin_user, site):
    body = {"path": "/admin", "username": "editor", "password": "correct horse battery"}
    _queued(_post(admin_client, site, "basic-auth/new", body), site, "site.runtime", "basic-auth", admin_user)
    user = BasicAuthUser.objects.get()
    assert (user.path_prefix, user.username, user.password_hash[:4]) == ("/admin", "editor", "$2b$")
    page = admin_client.get(_page(site)).content.decode()
    assert "editor" in page and "correct horse battery" not in page and user.password_hash not in page
    assert "correct horse battery" not in str(AuditEvent.objects.values_list("data", flat=True))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"path": "/", "username": "a:b", "password": "long enough password"}, "Usernames are"),
        ({"path": "/admin$", "username": "editor", "password": "long enough password"}, "A path starts"),
        ({"path": "/", "username": "editor", "password": "short"}, "8 to 72 bytes"),
    ],
)
def test_it_refuses_a_hostile_basic_auth_user_and_never_echoes_the_password(
    admin_client, site, body, message
):
    response = _post(admin_client, site, "basic-auth/new", body)
    shown = _refused(admin_client, response, site)
    assert len(shown) == 1 and message in shown[0], shown
    assert body["password"] not in shown[0]
    assert body["password"] not in admin_client.get(_page(site)).content.decode()
    assert not BasicAuthUser.objects.exists()


def test_it_never_fills_the_password_field_in(admin_client, site):
    page = admin_client.get(_page(site)).content.decode()
    assert 'type="password" name="password"' in page
    field = page.split('type="password" name="password"')[1].split(">")[0]
    assert "value=" not in field


def test_it_deletes_a_basic_auth_user(admin_client, admin_user, site):
    row = BasicAuthUser.objects.create(site=site, username="old", password_hash=password_hash("old password"))
    response = _post(admin_client, site, f"basic-auth/{row.pk}/delete", {})
    _queued(response, site, "site.runtime", "basic-auth", admin_user)
    assert not BasicAuthUser.objects.exists()


# --- PHP settings ----------------------------------------------------------------------------------

BLANK_PHP = dict.fromkeys(
    ("memory_limit", "upload_max_filesize", "post_max_size", "max_execution_time", "max_input_vars"), ""
)


def test_it_sets_and_clears_php_settings(admin_client, admin_user, site):
    body = BLANK_PHP | {"memory_limit": "512M", "max_execution_time": "120"}
    _queued(_post(admin_client, site, "php-settings", body), site, "site.runtime", "php-settings", admin_user)
    site.refresh_from_db()
    assert site.php_settings == {"memory_limit": "512M", "max_execution_time": 120}
    page = admin_client.get(_page(site)).content.decode()
    assert 'name="memory_limit" value="512M"' in page  # the form shows what is set
    Operation.objects.all().delete()
    response = _post(admin_client, site, "php-settings", BLANK_PHP | {"max_execution_time": "120"})
    _queued(response, site, "site.runtime", "php-settings", admin_user)
    site.refresh_from_db()
    assert site.php_settings == {"max_execution_time": 120}


def test_it_says_when_the_php_settings_are_unchanged(admin_client, site):
    response = _post(admin_client, site, "php-settings", BLANK_PHP)
    assert response.status_code == 302 and not Operation.objects.exists()
    shown = [str(m) for m in admin_client.get(_page(site)).context["messages"]]
    assert shown == ["The PHP settings are unchanged."]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"memory_limit": "2G"}, "Memory limit: memory_limit is 32M..512M on the pro tier."),
        ({"memory_limit": "-1"}, "a size such as"),
        ({"memory_limit": "1M\nx=1"}, "a size such as"),
        ({"upload_max_filesize": "100M", "post_max_size": "50M"}, "post_max_size must be at least"),
    ],
)
def test_it_refuses_a_php_setting_out_of_bounds_and_queues_nothing(admin_client, site, changes, message):
    shown = _refused(admin_client, _post(admin_client, site, "php-settings", BLANK_PHP | changes), site)
    assert len(shown) == 1 and message in shown[0], shown
    site.refresh_from_db()
    assert site.php_settings == {}


def test_it_offers_no_php_settings_for_a_static_site(admin_client, site):
    Site.objects.filter(pk=site.pk).update(type="static", php_version="")
    page = admin_client.get(_page(site)).content.decode()
    assert "PHP settings" not in page and 'name="memory_limit"' not in page
    shown = _refused(
        admin_client, _post(admin_client, site, "php-settings", BLANK_PHP | {"memory_limit": "128M"}), site
    )
    assert shown == ["static sites run no PHP."]


# --- the page and who may ----------------------------------------------------------------------------


def test_it_offers_no_controls_on_a_site_being_deleted(admin_client, site):
    CronJob.objects.create(site=site, schedule="@hourly", command=["true"])
    Site.objects.filter(pk=site.pk).update(status="deleting")
    page = admin_client.get(_page(site)).content.decode()
    assert "<code>@hourly</code>" in page
    actions = ("cron-jobs/", "workers/", "redirects/", "headers/", "basic-auth/", "php-settings")
    for action in actions:
        assert f'action="/sites/{site.pk}/{action}' not in page, action


def test_it_refuses_a_change_to_a_site_being_deleted(admin_client, site):
    Site.objects.filter(pk=site.pk).update(status="deleting")
    shown = _refused(
        admin_client, _post(admin_client, site, "headers/new", {"name": "X-A", "value": "1"}), site
    )
    assert shown == ["This site is being deleted."]


ACTIONS = [
    ("cron-jobs/new", {"schedule": "@hourly", "command": "true"}),
    ("cron-jobs/{job}/enabled", {"enabled": "false"}),
    ("cron-jobs/{job}/delete", {}),
    ("workers/new", {"name": "q", "command": "sleep\n60", "processes": "1", "restart": "always"}),
    ("workers/{worker}/enabled", {"enabled": "false"}),
    ("workers/{worker}/delete", {}),
    ("redirects/new", {"source": "/a", "match": "exact", "destination": "/b", "status_code": "301"}),
    ("redirects/{redirect}/delete", {}),
    ("headers/new", {"name": "X-A", "value": "1"}),
    ("headers/{header}/delete", {}),
    ("basic-auth/new", {"path": "/", "username": "u", "password": "long enough password"}),
    ("basic-auth/{user}/delete", {}),
    ("php-settings", BLANK_PHP | {"memory_limit": "128M"}),
]


@pytest.fixture
def rows(site) -> dict:
    return {
        "job": CronJob.objects.create(site=site, schedule="@daily", command=["true"]).pk,
        "worker": Worker.objects.create(site=site, name="w", command=["sleep", "60"]).pk,
        "redirect": Redirect.objects.create(site=site, source="/gone", destination="/here").pk,
        "header": ResponseHeader.objects.create(site=site, name="X-Old", value="1").pk,
        "user": BasicAuthUser.objects.create(
            site=site, username="old", password_hash="$2b$10$" + "a" * 53
        ).pk,
    }


def _counts() -> tuple:
    return tuple(m.objects.count() for m in (CronJob, Worker, Redirect, ResponseHeader, BasicAuthUser))


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_it_sends_a_non_staff_user_to_log_in_and_changes_nothing(client, alice, site, rows, path, body):
    client.force_login(alice.user)
    before = _counts()
    response = client.post(f"/sites/{site.pk}/{path.format(**rows)}", body)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert _counts() == before and not Operation.objects.exists()
    assert CronJob.objects.get().enabled and Worker.objects.get().enabled


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_it_refuses_a_post_without_the_csrf_token(admin_user, site, rows, path, body):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    before = _counts()
    response = client.post(f"/sites/{site.pk}/{path.format(**rows)}", body)
    assert response.status_code == 403
    assert _counts() == before and not Operation.objects.exists()


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_it_does_each_action_for_staff(admin_client, site, rows, path, body):
    """The same bodies as above do go through for staff: the refusals above are the guards'."""
    response = admin_client.post(f"/sites/{site.pk}/{path.format(**rows)}", body)
    assert response.status_code == 302 and "#" in response["Location"]
    assert Operation.objects.get().status == "queued"


@pytest.mark.parametrize("path", ["cron-jobs/new", "workers/1/delete", "php-settings"])
def test_it_answers_a_get_with_405(admin_client, site, path):
    assert admin_client.get(f"/sites/{site.pk}/{path}").status_code == 405
