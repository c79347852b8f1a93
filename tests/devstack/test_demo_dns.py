"""make demo's DNS provider fakes: started, pointed at by CHOM's settings, stopped."""

import requests

from devstack.demo import Demo, start_demo_dns
from sites.dns import get_dns_provider


def test_it_starts_both_dns_fakes_and_gives_chom_their_urls():
    demo = Demo(env={}, stoppers=[], description=[])
    lines = start_demo_dns(demo, challtestsrv="")
    try:
        assert set(demo.env) == {"DNS_DIGITALOCEAN_API_URL", "DNS_CLOUDFLARE_API_URL"}
        for provider, setting in (
            ("digitalocean", "DNS_DIGITALOCEAN_API_URL"),
            ("cloudflare", "DNS_CLOUDFLARE_API_URL"),
        ):
            token = next(line for line in lines if setting in line).rsplit(" ", 1)[1]
            get_dns_provider(provider, token=token, base_url=demo.env[setting]).verify()
    finally:
        demo.stop()
    try:
        requests.get(demo.env["DNS_DIGITALOCEAN_API_URL"] + "/domains", timeout=2)
    except requests.ConnectionError:
        pass
    else:
        raise AssertionError("the fake still answers after the demo stopped")
