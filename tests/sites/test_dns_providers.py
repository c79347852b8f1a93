"""The DNS provider clients (sites/dns) against local fakes of the DigitalOcean and Cloudflare
DNS APIs (devstack/dns_fakes.py), and the fakes' challtestsrv publishing that DNS-01 relies on."""

from pathlib import Path

import dns.nameserver
import dns.resolver
import pytest

from devstack.dns_fakes import CloudflareDnsFake, DigitalOceanDnsFake
from sites.dns import CloudflareDns, DigitalOceanDns, DnsProviderError, candidate_zones

CLIENTS = [(DigitalOceanDnsFake, DigitalOceanDns), (CloudflareDnsFake, CloudflareDns)]
IDS = ["digitalocean", "cloudflare"]


def test_it_lists_a_name_and_its_parents_as_candidate_zones():
    assert candidate_zones("_acme-challenge.a.example.test.") == [
        "_acme-challenge.a.example.test",
        "a.example.test",
        "example.test",
    ]


@pytest.mark.parametrize(("fake_class", "client_class"), CLIENTS, ids=IDS)
def test_it_creates_finds_and_deletes_a_txt_record_in_the_right_zone(fake_class, client_class):
    with fake_class(zones=("example.test", "other.test")) as fake:
        client = client_class(token=fake.token, base_url=fake.url)
        client.verify()
        record = client.add_txt("_acme-challenge.Shop.Example.test", "v4lue")
        assert (record.zone, record.name) == ("example.test", "_acme-challenge.shop.example.test")
        assert fake.txt_values("_acme-challenge.shop.example.test") == ["v4lue"]
        client.delete_txt(record)
        assert fake.txt_values("_acme-challenge.shop.example.test") == []
        client.delete_txt(record)  # already gone: no error


@pytest.mark.parametrize(("fake_class", "client_class"), CLIENTS, ids=IDS)
def test_it_refuses_a_bad_token_as_a_permanent_error_without_leaking_it(fake_class, client_class):
    with fake_class() as fake:
        client = client_class(token="wrong-token-123456", base_url=fake.url)
        with pytest.raises(DnsProviderError) as caught:
            client.verify()
    assert caught.value.permanent and caught.value.status == 401
    assert "wrong-token-123456" not in str(caught.value)


@pytest.mark.parametrize(("fake_class", "client_class"), CLIENTS, ids=IDS)
def test_it_says_which_name_no_zone_holds(fake_class, client_class):
    with fake_class(zones=("example.test",)) as fake:
        client = client_class(token=fake.token, base_url=fake.url)
        with pytest.raises(DnsProviderError, match="elsewhere.test") as caught:
            client.add_txt("_acme-challenge.elsewhere.test", "x")
    assert caught.value.permanent


@pytest.mark.parametrize(("fake_class", "client_class"), CLIENTS, ids=IDS)
def test_it_reports_a_server_error_as_transient_with_the_providers_message(fake_class, client_class):
    with fake_class() as fake:
        client = client_class(token=fake.token, base_url=fake.url)
        fake.fail_next(503, method="POST", message="zone backend down")
        with pytest.raises(DnsProviderError, match="zone backend down") as caught:
            client.add_txt("_acme-challenge.example.test", "x")
    assert not caught.value.permanent and caught.value.status == 503


def test_it_reports_an_unreachable_api_as_transient():
    client = DigitalOceanDns(token="t", base_url="http://127.0.0.1:1/v2", timeout=2)
    with pytest.raises(DnsProviderError) as caught:
        client.verify()
    assert not caught.value.permanent


@pytest.mark.parametrize("fake_class", [DigitalOceanDnsFake, CloudflareDnsFake], ids=IDS)
def test_the_fake_refuses_what_the_real_api_refuses(fake_class):
    import requests

    with fake_class() as fake:
        auth = {"Authorization": f"Bearer {fake.token}"}
        if fake_class is DigitalOceanDnsFake:
            url, body = f"{fake.url}/domains/example.test/records", {"type": "TXT", "name": "x.example.test"}
        else:
            zone_id = fake.zones["example.test"]
            url, body = f"{fake.url}/zones/{zone_id}/dns_records", {"type": "TXT", "name": "x.other.test"}
        answer = requests.post(url, json=body, headers=auth, timeout=5)
        assert answer.status_code in (400, 422)
        unauthenticated = requests.post(url, json=body, timeout=5)
        assert unauthenticated.status_code == 401
    assert fake.records == {}


@pytest.mark.parametrize(("fake_class", "client_class"), CLIENTS, ids=IDS)
def test_the_fake_serves_its_txt_records_through_challtestsrv(fake_class, client_class, tmp_path: Path):
    from devstack.pebble import start_dns_test_server

    server = start_dns_test_server(tmp_path)
    try:
        resolver = dns.resolver.Resolver(configure=False)
        host, port = server.dns_server.split(":")
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, int(port))]
        with fake_class(challtestsrv=server.management_url) as fake:
            client = client_class(token=fake.token, base_url=fake.url)
            # A wildcard and its apex answer challenges at the same name: both values are served.
            one = client.add_txt("_acme-challenge.example.test", "one")
            client.add_txt("_acme-challenge.example.test", "two")
            answer = resolver.resolve("_acme-challenge.example.test", "TXT")
            assert sorted(b"".join(r.strings).decode() for r in answer) == ["one", "two"]
            client.delete_txt(one)
            answer = resolver.resolve("_acme-challenge.example.test", "TXT")
            assert [b"".join(r.strings).decode() for r in answer] == ["two"]
    finally:
        server.stop()
