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
class Pebble:
    directory_url: str
    ca_bundle: Path  # trust this to talk to the ACME API
    dns_management_url: str  # challtestsrv: where sites.services points test domains at VPSes
    management_url: str
    processes: list[subprocess.Popen]

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
    require("pebble-challtestsrv", package="pebble")
    folder.mkdir(parents=True, exist_ok=True)
    ca, cert, key = make_listener_cert(folder, sorted({"127.0.0.1", listen_ip}))
    api_port, mgmt_port = free_port(listen_ip), free_port()
    dns_port, dns_mgmt_port = free_port(kind=socket.SOCK_DGRAM), free_port()
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
    processes = []
    try:
        processes.append(
            spawn(
                ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01",
                 f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-management", f"127.0.0.1:{dns_mgmt_port}"],
                folder / "challtestsrv.log",
            )
        )  # fmt: skip
        wait_tcp("127.0.0.1", dns_mgmt_port)
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        processes.append(
            spawn(
                ["pebble", "-config", str(folder / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
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
        dns_management_url=f"http://127.0.0.1:{dns_mgmt_port}",
        management_url=f"https://127.0.0.1:{mgmt_port}",
        processes=processes,
    )
