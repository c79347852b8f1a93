"""A real ACME CA for `make demo` and the e2e suite: pebble + its DNS test server
(pebble-challtestsrv), as child processes, always stopped."""

import json
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests

from devstack.processes import free_port, require, spawn, stop_processes, wait_tcp


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_listener_cert(folder: Path, ips: list[str]) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for pebble's API (SANs: localhost + IPS)."""
    ca_key, ca_cert = folder / "ca.key", folder / "ca.pem"
    key, csr, cert = folder / "listener.key", folder / "listener.csr", folder / "listener.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert),
             "-days", "2", "-subj", "/CN=CHOM demo ACME listener CA")  # fmt: skip
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=localhost",
    )
    san = "subjectAltName=DNS:localhost," + ",".join(f"IP:{ip}" for ip in ips)
    (folder / "san.ext").write_text(san + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-extfile", str(folder / "san.ext"))  # fmt: skip
    return ca_cert, cert, key


@dataclass
class DnsTestServer:
    """pebble-challtestsrv as a DNS server: names it was told nothing about resolve to 127.0.0.1
    (A only); `point` makes a name resolve to the given addresses, as a customer's DNS would."""

    dns_server: str  # "127.0.0.1:port" (UDP and TCP), e.g. for TLS_DNS_RESOLVERS
    management_url: str
    processes: list[subprocess.Popen]

    def point(self, name: str, *addresses: str) -> None:
        for path, body in (
            ("clear-a", {"host": f"{name}."}),
            ("add-a", {"host": f"{name}.", "addresses": list(addresses)}),
        ):
            requests.post(f"{self.management_url}/{path}", json=body, timeout=5).raise_for_status()

    def stop(self) -> None:
        stop_processes(self.processes)


def start_dns_test_server(folder: Path) -> DnsTestServer:
    require("pebble-challtestsrv", package="pebble")
    folder.mkdir(parents=True, exist_ok=True)
    dns_port, mgmt_port = free_port(kind=socket.SOCK_DGRAM), free_port()
    process = spawn(
        ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01",
         f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
         "-management", f"127.0.0.1:{mgmt_port}"],
        folder / "challtestsrv.log",
    )  # fmt: skip
    try:
        wait_tcp("127.0.0.1", mgmt_port)
    except BaseException:
        stop_processes([process])
        raise
    return DnsTestServer(f"127.0.0.1:{dns_port}", f"http://127.0.0.1:{mgmt_port}", [process])


@dataclass
class Pebble:
    directory_url: str
    ca_bundle: Path  # trust this to talk to the ACME API
    dns_management_url: str  # challtestsrv: where sites.services points test domains at VPSes
    management_url: str
    processes: list[subprocess.Popen]
    dns: DnsTestServer  # the DNS pebble validates through (TLS_DNS_RESOLVERS: dns.dns_server)

    def issuing_root(self) -> str:
        """The root that signs issued certificates (new on every pebble start)."""
        response = requests.get(f"{self.management_url}/roots/0", verify=str(self.ca_bundle), timeout=5)
        response.raise_for_status()
        return response.text

    def stop(self) -> None:
        stop_processes(self.processes)


def start_pebble(folder: Path, *, listen_ip: str, validation_port: int = 80) -> Pebble:
    """pebble validates HTTP-01 on VALIDATION_PORT of whatever challtestsrv resolves a domain to."""
    require("pebble", package="pebble")
    folder.mkdir(parents=True, exist_ok=True)
    ca, cert, key = make_listener_cert(folder, sorted({"127.0.0.1", listen_ip}))
    api_port, mgmt_port = free_port(listen_ip), free_port()
    config = {
        "pebble": {
            "listenAddress": f"{listen_ip}:{api_port}",
            "managementListenAddress": f"127.0.0.1:{mgmt_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": validation_port,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (folder / "pebble.json").write_text(json.dumps(config))
    dns = start_dns_test_server(folder)
    processes = list(dns.processes)
    try:
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        processes.append(
            spawn(
                ["pebble", "-config", str(folder / "pebble.json"), "-dnsserver", dns.dns_server],
                folder / "pebble.log",
                env=env,
            )
        )
        wait_tcp(listen_ip, api_port)
    except BaseException:
        stop_processes(processes)
        raise
    return Pebble(
        directory_url=f"https://{listen_ip}:{api_port}/dir",
        ca_bundle=ca,
        dns_management_url=dns.management_url,
        management_url=f"https://127.0.0.1:{mgmt_port}",
        processes=processes,
        dns=dns,
    )
