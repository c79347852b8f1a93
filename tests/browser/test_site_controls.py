"""A site's runtime controls through its page, as staff in a browser: each form adds what it says,
the site page lists it with its operation queued, and a hostile value is refused on the page with
nothing queued. No server is reached: the operations stay queued (no Celery worker runs here)."""

import pytest

from chom.models import Operation
from chom.services import tenant_create
from fleet.models import Vps
from sites.models import BasicAuthUser, CronJob, Redirect, ResponseHeader, Site, Worker
from tests.browser.helpers import assert_accessible, duplicate_ids, follow, screenshot, visit

PASSWORD = "correct horse battery staple"


@pytest.fixture
def site(staff_user):
    vps = Vps.objects.create(
        name="web-1", provider="manual", ip_address="192.0.2.10", status=Vps.Status.ACTIVE, max_sites=50,
        php_versions=["8.2"],
    )  # fmt: skip
    tenant, _ = tenant_create(slug="acme", name="Acme", tier="pro", owner_email="alice@acme.test")
    return Site.objects.create(
        tenant=tenant, vps=vps, domain="shop.acme.test", type=Site.Type.PHP, php_version="8.2",
        status=Site.Status.ACTIVE, unix_user="site1", current_release="r1",
    )  # fmt: skip


def _form(page, button: str):
    return page.locator("form", has=page.get_by_role("button", name=button, exact=True))


def _submit(page, button: str) -> None:
    errors = follow(page, page.get_by_role("button", name=button, exact=True))
    assert errors == [], errors


def _message(page) -> str:
    return page.locator("ul.messages").inner_text()


def _queued_on_page(page, kind: str) -> int:
    """Rows of the site page's operations table for KIND that say queued."""
    rows = page.locator("xpath=//h2[normalize-space()='Operations']/following-sibling::table[1]/tbody/tr")
    return sum(1 for text in rows.all_inner_texts() if kind in text and "queued" in text)


def _table(page, css: str) -> str:
    return page.locator(f"table.{css}").inner_text()


def test_it_adds_each_runtime_control_through_the_site_page(staff_page, live_server, site):
    page = staff_page
    url = f"{live_server.url}/sites/{site.pk}/"
    assert visit(page, url) == []
    assert duplicate_ids(page) == []
    assert_accessible(page)

    cron = _form(page, "Add the cron job")
    cron.get_by_label("Schedule").fill("*/5 * * * *")
    cron.get_by_label("Command").fill("php\nartisan\nreport:send")
    _submit(page, "Add the cron job")
    assert "Cron job */5 * * * * added. site.cron is queued." in _message(page)
    assert "*/5 * * * *" in _table(page, "cron-jobs") and "php artisan report:send" in _table(
        page, "cron-jobs"
    )
    assert _queued_on_page(page, "site.cron") == 1
    assert CronJob.objects.get().command == ["php", "artisan", "report:send"]

    worker = _form(page, "Add the worker")
    worker.get_by_label("Name").fill("queue")
    worker.get_by_label("Command").fill("php\nartisan\nqueue:work\n--tries=3")
    worker.get_by_label("Processes").fill("2")
    worker.get_by_label("Restart").select_option("on-failure")
    _submit(page, "Add the worker")
    assert "Worker queue added. site.workers is queued." in _message(page)
    assert "php artisan queue:work --tries=3" in _table(page, "workers")
    assert _queued_on_page(page, "site.workers") == 1
    assert (Worker.objects.get().processes, Worker.objects.get().restart) == (2, "on-failure")

    redirect = _form(page, "Add the redirect")
    redirect.get_by_label("From").fill("/old-shop")
    redirect.get_by_label("Match").select_option("prefix")
    redirect.get_by_label("To").fill("https://shop.acme.test/new")
    redirect.get_by_label("Status").select_option("308")
    _submit(page, "Add the redirect")
    assert "Redirect of /old-shop added. site.runtime is queued." in _message(page)
    assert "/old-shop" in _table(page, "redirects") and "308" in _table(page, "redirects")
    assert _queued_on_page(page, "site.runtime") == 1

    header = _form(page, "Add the header")
    header.get_by_label("Header").fill("X-Robots-Tag")
    header.get_by_label("Value").fill("noindex")
    _submit(page, "Add the header")
    assert "Header X-Robots-Tag added. site.runtime is queued." in _message(page)
    assert "X-Robots-Tag" in _table(page, "response-headers")
    assert _queued_on_page(page, "site.runtime") == 2

    auth = _form(page, "Save the user")
    auth.get_by_label("Path").fill("/admin")
    auth.get_by_label("Username").fill("editor")
    auth.get_by_label("Password").fill(PASSWORD)
    _submit(page, "Save the user")
    assert "Basic-auth user editor on /admin saved. site.runtime is queued." in _message(page)
    assert "editor" in _table(page, "basic-auth")
    assert _queued_on_page(page, "site.runtime") == 3
    assert _form(page, "Save the user").get_by_label("Password").input_value() == ""
    assert PASSWORD not in page.content() and "$2b$" not in page.content()
    assert BasicAuthUser.objects.get().password_hash.startswith("$2b$")

    php = _form(page, "Save the PHP settings")
    php.get_by_label("Memory limit").fill("512M")
    _submit(page, "Save the PHP settings")
    assert "PHP settings saved. site.runtime is queued." in _message(page)
    assert "512M" in _table(page, "php-settings")
    assert php.get_by_label("Memory limit").input_value() == "512M"
    assert _queued_on_page(page, "site.runtime") == 4
    site.refresh_from_db()
    assert site.php_settings == {"memory_limit": "512M"}

    screenshot(page, "site-detail-runtime-controls")
    assert duplicate_ids(page) == []
    assert_accessible(page)  # the rows' buttons too


def test_it_disables_and_deletes_through_the_rows_buttons(staff_page, live_server, site):
    CronJob.objects.create(site=site, schedule="@hourly", command=["php", "artisan", "report"])
    Worker.objects.create(site=site, name="queue", command=["php", "artisan", "queue:work"])
    Redirect.objects.create(site=site, source="/gone", destination="/here")
    page = staff_page
    assert visit(page, f"{live_server.url}/sites/{site.pk}/") == []

    _submit(page, "Disable cron job @hourly php artisan report")
    assert "Cron job @hourly disabled. site.cron is queued." in _message(page)
    assert CronJob.objects.get().enabled is False
    assert page.get_by_role("button", name="Enable cron job @hourly php artisan report").is_visible()

    _submit(page, "Disable worker queue")
    assert Worker.objects.get().enabled is False and _queued_on_page(page, "site.workers") == 1

    _submit(page, "Delete the redirect of /gone")
    assert "Redirect of /gone deleted. site.runtime is queued." in _message(page)
    assert not Redirect.objects.exists() and "No redirects." in page.content()


def test_it_shows_the_refusal_of_a_hostile_header_value_and_queues_nothing(staff_page, live_server, site):
    page = staff_page
    assert visit(page, f"{live_server.url}/sites/{site.pk}/") == []
    header = _form(page, "Add the header")
    header.get_by_label("Header").fill("X-Leak")
    header.get_by_label("Value").fill("$http_cookie")  # nginx would send the visitor's cookies back
    _submit(page, "Add the header")
    message = page.locator("ul.messages li.error")
    assert message.inner_text() == (
        "Header values are printable ASCII without $ (nginx would read a variable) and without control "
        "characters."
    )
    assert page.url.startswith(f"{live_server.url}/sites/{site.pk}/")
    assert "No extra response headers." in page.content()
    assert not ResponseHeader.objects.exists() and not Operation.objects.exists()
    screenshot(page, "site-detail-refused-header")
