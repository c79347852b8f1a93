"""`make demo`: CHOM with the `local` provider plus local stand-ins for the outside world (a real
ACME CA, S3, Prometheus, Alertmanager and a blackbox exporter probing the sites), all on this machine.

`python -m devstack --port N` (what `make demo` runs) starts the stand-ins on the local fleet's
bridge, then runs `manage.py run_stack` with the settings that point CHOM at them, prints a staff
token, and stops everything on Ctrl-C. Nothing in the product imports this package.

The demo also has a cloud account: a local fake of DigitalOcean's API (devstack/clouds.py) whose
droplets are real local VPSes, saved as CHOM's default cloud account, so creating a VPS with
provider "digitalocean" (API or dashboard) and the fleet's auto-grow work from the first minute.
Its droplets live as long as the demo runs (the fake forgets them when it stops).
"""

import secrets
from dataclasses import dataclass
from pathlib import Path

from devstack.clouds import DigitalOceanFake, LocalMachines
from devstack.dns_fakes import CloudflareDnsFake, DigitalOceanDnsFake
from devstack.monitoring import start_monitoring
from devstack.pebble import start_pebble
from devstack.s3 import start_s3
from fleet import localfleet

# The demo's Prometheus scrapes, evaluates and refreshes targets this often (tests use 1 s).
DEMO_SCRAPE_SECONDS = 10


@dataclass
class Demo:
    env: dict[str, str]  # settings the CHOM processes need to use the stand-ins
    stoppers: list
    description: list[str]

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            stop()


def start_demo(
    var_dir: Path, *, bridge: str, subnet: str, chom_url: str, fleet_dir: Path | None = None
) -> Demo:
    """Everything `make demo` runs besides CHOM itself, wired to the local fleet's bridge."""
    network = localfleet.network_up(bridge, subnet)
    # Sites of the demo may clone from a git server on the fleet bridge (README's walkthrough).
    demo = Demo(env={"REPOSITORY_ALLOWED_NETWORKS": f"{subnet}.0/24"}, stoppers=[], description=[])
    try:
        pebble = start_pebble(var_dir / "demo" / "pebble", listen_ip=network.gateway, validation_port=80)
        demo.stoppers.append(pebble.stop)
        demo.env.update(
            ACME_DIRECTORY_URL=pebble.directory_url,
            ACME_CA_BUNDLE_FILE=str(pebble.ca_bundle),
            LOCAL_DNS_MANAGEMENT_URL=pebble.dns_management_url,
            # Automatic TLS asks the demo's DNS (where CHOM puts the demo's sites) too.
            TLS_DNS_RESOLVERS=pebble.dns.dns_server,
        )
        demo.description.append(f"ACME CA (pebble): {pebble.directory_url}")
        # Under var/, never the repository root: new on every start, like pebble's root itself.
        root = var_dir / "demo" / "demo-root.pem"
        root.write_text(pebble.issuing_root())
        demo.description.append(f"  its issuing root, to verify the demo's HTTPS: curl --cacert {root} ...")
        demo.description += start_demo_dns(demo, challtestsrv=pebble.dns_management_url)
        env, stop, description = start_monitoring(
            var_dir / "demo" / "monitoring",
            chom_url=chom_url,
            listen_ip=network.gateway,
            sd_token=secrets.token_urlsafe(24),
            webhook_token=secrets.token_urlsafe(24),
            interval=DEMO_SCRAPE_SECONDS,
            probe_ca_file=str(root),  # the uptime probes verify the demo sites' https
        )
        demo.stoppers.append(stop)
        demo.env.update(env)
        demo.description += description
        env, stop, description = start_s3(var_dir / "demo" / "s3")
        demo.stoppers.append(stop)
        demo.env.update(env)
        demo.description += description
        demo.description += start_demo_cloud(
            demo, fleet_dir or var_dir / "fleet", bridge=bridge, subnet=subnet
        )
    except BaseException:
        demo.stop()
        raise
    return demo


def start_demo_dns(demo: Demo, *, challtestsrv: str) -> list[str]:
    """Local fakes of the DigitalOcean and Cloudflare DNS APIs (zone example.test in each) that
    serve their TXT records through pebble's DNS: wildcard sites get DNS-01 certificates."""
    lines = []
    for fake_class, setting in (
        (DigitalOceanDnsFake, "DNS_DIGITALOCEAN_API_URL"),
        (CloudflareDnsFake, "DNS_CLOUDFLARE_API_URL"),
    ):
        fake = fake_class(zones=("example.test",), challtestsrv=challtestsrv)
        fake.start()
        demo.stoppers.append(fake.stop)
        demo.env[setting] = fake.url
        lines.append(f"DNS provider fake ({setting}): {fake.url}, zone example.test, token {fake.token}")
    return lines


def start_demo_cloud(demo: Demo, fleet_dir: Path, *, bridge: str, subnet: str) -> list[str]:
    """The DigitalOcean fake with real machines (sharing the local provider's directory, so the
    two never hand out the same address), saved as the default cloud account."""
    from fleet.services import provider_credential_save

    machines = LocalMachines(base_dir=str(fleet_dir), bridge=bridge, subnet=subnet)
    cloud = DigitalOceanFake(machines=machines).__enter__()
    demo.stoppers.append(lambda: cloud.__exit__(None, None, None))
    provider_credential_save(
        provider=cloud.provider_name,
        token=cloud.token,
        base_url=cloud.url,
        default_region="fra1",
        default_size="s-1vcpu-2gb",
        is_default=True,
    )
    return [
        f"cloud account 'digitalocean' (default): a local fake of its API at {cloud.url}",
        "  its droplets are local VPSes: POST /api/v1/vps with provider digitalocean",
    ]
