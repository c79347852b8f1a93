"""Uptime probes: the http_sd list CHOM serves to Prometheus for the blackbox exporter (which
sites, which URLs, which labels, who may read it), and a site's uptime read back through a real
Prometheus whose storage holds two days of probe results (backfilled with promtool)."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory

from devstack.processes import free_port, spawn, stop_processes, wait_http
from sites.models import Site
from tests.observability.factories import make_site, make_vps

TOKEN = "sd-secret-token"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")


@pytest.fixture
def sd_token(settings):
    settings.PROMETHEUS_SD_TOKEN = TOKEN
    return TOKEN


def _deployed(tenant, vps, domain: str, **fields) -> Site:
    site = make_site(tenant, vps, domain)
    Site.objects.filter(pk=site.pk).update(**({"current_release": "20250101000000"} | fields))
    site.refresh_from_db()
    return site


def _probes(client, token=TOKEN):
    return client.get("/observability/sd/probes", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_it_lists_every_serving_sites_urls_at_its_vps_address_with_routing_labels(
    client, sd_token, alice, charlie
):
    web1 = make_vps("web1", ip_address="192.0.2.10")
    web2 = make_vps("web2", ip_address="2001:db8::2")
    shop = _deployed(alice.tenant, web1, "shop.acme.test", ssl_status=Site.SslStatus.ACTIVE)
    blog = _deployed(charlie.tenant, web2, "blog.globex.test", ssl_status=Site.SslStatus.PENDING)

    response = _probes(client)

    assert response.status_code == 200
    labels = {"site": shop.unix_user, "domain": "shop.acme.test", "tenant": alice.tenant.slug, "vps": "web1"}
    assert response.json() == [
        {"targets": ["http://[2001:db8::2]/"], "labels": {
            "site": blog.unix_user, "domain": "blog.globex.test", "tenant": charlie.tenant.slug,
            "vps": "web2", "scheme": "http"}},  # a certificate still pending: http only
        {"targets": ["http://192.0.2.10/"], "labels": {**labels, "scheme": "http"}},
        {"targets": ["https://192.0.2.10/"], "labels": {**labels, "scheme": "https"}},
    ]  # fmt: skip


@pytest.mark.parametrize(
    "fields",
    [
        {"status": Site.Status.PENDING, "current_release": ""},
        {"status": Site.Status.DEPLOYING, "current_release": ""},  # first deploy: nothing served yet
        {"status": Site.Status.FAILED, "current_release": ""},
        {"status": Site.Status.SUSPENDED},
        {"status": Site.Status.ACTIVE, "suspended_reason": "unpaid"},  # suspension asked for
        {"status": Site.Status.DELETING},
        {"status": Site.Status.DELETED},
    ],
)
def test_it_probes_only_sites_that_should_serve(client, sd_token, alice, fields):
    vps = make_vps("web1")
    _deployed(alice.tenant, vps, "live.acme.test")
    _deployed(alice.tenant, vps, "other.acme.test", **fields)

    domains = [group["labels"]["domain"] for group in _probes(client).json()]

    assert domains == ["live.acme.test"]


def test_it_keeps_probing_a_site_during_a_redeploy_and_skips_a_vps_without_address(client, sd_token, alice):
    _deployed(alice.tenant, make_vps("web1"), "redeploying.acme.test", status=Site.Status.DEPLOYING)
    _deployed(alice.tenant, make_vps("lost", ip_address=None), "nowhere.acme.test")

    assert [g["labels"]["domain"] for g in _probes(client).json()] == ["redeploying.acme.test"]


def test_it_refuses_the_probe_list_without_the_sd_token(client, sd_token, alice):
    _deployed(alice.tenant, make_vps("web1"), "shop.acme.test")
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": TOKEN}):
        response = client.get("/observability/sd/probes", **headers)
        assert response.status_code == 401
        assert "shop.acme.test" not in response.content.decode()
    assert _probes(client).status_code == 200


def test_it_refuses_everyone_when_no_sd_token_is_configured(client, settings, alice):
    settings.PROMETHEUS_SD_TOKEN = ""
    assert client.get("/observability/sd/probes", HTTP_AUTHORIZATION="Bearer ").status_code == 401


# --- uptime through a real Prometheus ------------------------------------------------------------

STEP = 300  # one probe result every 5 minutes, for two days
SAMPLES = 580


def _openmetrics(series: dict[str, list[int]], end: float) -> str:
    lines = ["# TYPE probe_success gauge"]
    for labels, values in series.items():
        start = end - STEP * (len(values) - 1)
        lines += [f"probe_success{{{labels}}} {v} {start + i * STEP:.3f}" for i, v in enumerate(values)]
    return "\n".join(lines + ["# EOF", ""])


@pytest.fixture
def probed(tmp_path, settings, alice, charlie):
    """Prometheus serving two days of probe results: shop's http failed its first 10 % (https
    never), blog is down now, docs was never probed."""
    if not (PROMETHEUS and PROMTOOL):
        pytest.skip("apt-get install prometheus")
    vps = make_vps("web1")
    shop, blog = (
        _deployed(alice.tenant, vps, "shop.acme.test"),
        _deployed(alice.tenant, vps, "blog.acme.test"),
    )
    docs, theirs = (
        _deployed(alice.tenant, vps, "docs.acme.test"),
        _deployed(charlie.tenant, vps, "x.globex.test"),
    )

    def labels(site: Site, scheme: str) -> str:
        return (
            f'job="chom-probes",instance="{scheme}://{site.domain}/",site="{site.unix_user}",'
            f'domain="{site.domain}",tenant="{site.tenant.slug}",vps="web1",scheme="{scheme}"'
        )

    zeros = SAMPLES // 10
    series = {
        labels(shop, "http"): [0] * zeros + [1] * (SAMPLES - zeros),
        labels(shop, "https"): [1] * SAMPLES,
        labels(blog, "http"): [1] * (SAMPLES - 1) + [0],
        labels(theirs, "http"): [0] * SAMPLES,
        f'job="other-probes",instance="http://docs.acme.test/",site="{docs.unix_user}"': [1] * SAMPLES,
    }
    (tmp_path / "probes.om").write_text(_openmetrics(series, end=time.time() - 30))
    data = tmp_path / "data"
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "-q", str(tmp_path / "probes.om"), str(data)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (tmp_path / "prometheus.yml").write_text("global: {}\n")
    port, log = free_port(), tmp_path / "prometheus.log"
    proc = spawn(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}"],
        log,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", proc, log)
        settings.PROMETHEUS_URL = f"http://127.0.0.1:{port}"
        yield {"shop": shop, "blog": blog, "docs": docs, "theirs": theirs}
    finally:
        stop_processes([proc])


def test_it_reports_the_current_probe_state_and_30_day_uptime_of_a_site(alice, probed):
    shop = probed["shop"]

    response = alice.client().get(f"/api/v1/sites/{shop.pk}/uptime")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "state": "up",
        "uptime_percent": 90.0,  # its worst URL
        "window": "30d",
        "urls": [
            {"url": "http://shop.acme.test/", "state": "up", "uptime_percent": 90.0},
            {"url": "https://shop.acme.test/", "state": "up", "uptime_percent": 100.0},
        ],
    }


def test_it_says_down_when_the_last_probe_failed_and_unknown_when_never_probed(alice, probed):
    blog = alice.client().get(f"/api/v1/sites/{probed['blog'].pk}/uptime").json()
    docs = alice.client().get(f"/api/v1/sites/{probed['docs'].pk}/uptime").json()

    assert blog["state"] == "down" and blog["urls"][0]["state"] == "down"
    assert 99.8 < blog["uptime_percent"] < 100
    assert docs == {"state": "unknown", "uptime_percent": None, "window": "30d", "urls": []}


def test_it_hides_another_tenants_site_uptime(alice, charlie, staff, probed):
    theirs = probed["theirs"]
    assert alice.client().get(f"/api/v1/sites/{theirs.pk}/uptime").status_code == 404
    assert charlie.client().get(f"/api/v1/sites/{theirs.pk}/uptime").json()["state"] == "down"
    assert staff.client().get(f"/api/v1/sites/{theirs.pk}/uptime").json()["uptime_percent"] == 0.0


def test_it_shows_a_green_or_red_badge_with_the_percentage_on_the_site_page(
    admin_client, probed, django_user_model
):
    page = admin_client.get(f"/sites/{probed['shop'].pk}/").content.decode()
    assert 'data-chom-uptime="up"' in page and '<span class="status ok">up</span>' in page
    assert "90.00% over the last 30d" in page
    down = admin_client.get(f"/sites/{probed['blog'].pk}/").content.decode()
    assert 'data-chom-uptime="down"' in down and '<span class="status down">down</span>' in down


def test_it_answers_503_without_prometheus(alice, settings):
    site = _deployed(alice.tenant, make_vps("web1"), "shop.acme.test")
    settings.PROMETHEUS_URL = ""
    response = alice.client().get(f"/api/v1/sites/{site.pk}/uptime")
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_configured"
    settings.PROMETHEUS_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    response = alice.client().get(f"/api/v1/sites/{site.pk}/uptime")
    assert response.status_code == 503 and response.json()["error"]["code"] == "prometheus_unavailable"


def test_the_site_page_says_why_there_is_no_uptime(alice, settings, django_user_model):
    site = _deployed(alice.tenant, make_vps("web1"), "shop.acme.test")
    request = RequestFactory().get("/")
    request.user = django_user_model.objects.create_user("ops", is_staff=True)
    context = {"site": site, "releases": [], "operations": []}
    settings.PROMETHEUS_URL = ""
    page = render_to_string("observability/site_detail.html", context, request)
    assert "PROMETHEUS_URL is not configured: no uptime probes" in page
    settings.PROMETHEUS_URL = f"http://127.0.0.1:{free_port()}"
    page = render_to_string("observability/site_detail.html", context, request)
    assert 'data-chom-uptime="unknown"' in page and "Prometheus is unreachable" in page


def test_the_probe_module_and_jobs_are_the_same_in_production_and_the_local_stack():
    """devstack loads production's blackbox.yml, and its job relabels as production's does."""
    import yaml

    from devstack.monitoring import blackbox_config, prometheus_config

    deploy = Path(__file__).resolve().parents[2] / "deploy" / "observability"
    production = yaml.safe_load((deploy / "prometheus.yml").read_text())
    [prod_job] = [j for j in production["scrape_configs"] if j["job_name"] == "chom-probes"]
    local = prometheus_config(chom_url="http://c", sd_token="t", alertmanager="a:1", rule_files=[])
    [local_job] = [j for j in local["scrape_configs"] if j["job_name"] == "chom-probes"]
    assert local_job["relabel_configs"][:-1] == prod_job["relabel_configs"][:-1]
    assert local_job["params"] == prod_job["params"] == {"module": ["chom_site"]}
    assert blackbox_config() == yaml.safe_load((deploy / "blackbox.yml").read_text())
    module = blackbox_config(ca_file="/ca.pem")["modules"]["chom_site"]["http"]
    assert module["tls_config"]["ca_file"] == "/ca.pem" and module["follow_redirects"] is False
