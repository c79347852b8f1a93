"""Local stand-ins for the outside services CHOM talks to, for `make demo` and the e2e suite:
a real ACME CA (pebble + its DNS test server). Each runs as a child process, always stopped."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

READY_TIMEOUT = 20.0
# The demo's Prometheus scrapes, evaluates and refreshes targets this often (tests use 1 s).
DEMO_SCRAPE_SECONDS = 10


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_tcp(host: str, port: int, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


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
        _wait_tcp("127.0.0.1", dns_mgmt_port)
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        processes.append(
            spawn(
                ["pebble", "-config", str(folder / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
                folder / "pebble.log",
                env=env,
            )
        )
        _wait_tcp(listen_ip, api_port)
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


def spawn(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """A child in its own session (so a Ctrl-C of the parent reaches it only through us)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def wait_http(url: str, proc: subprocess.Popen, log: Path, *, ok=lambda response: response.ok) -> None:
    """Bounded wait until URL answers as OK wants; fails at once if PROC died."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}); see {log}")
        try:
            if ok(requests.get(url, timeout=0.2)):
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {READY_TIMEOUT}s; see {log}")


def stop_processes(processes: list[subprocess.Popen], timeout: float = 10) -> None:
    """TERM each child's process group, KILL what is still there after TIMEOUT."""
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@dataclass
class Demo:
    env: dict[str, str]  # settings the CHOM processes need to use the stand-ins
    stoppers: list
    description: list[str]

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            stop()


def start_demo(var_dir: Path, *, bridge: str, subnet: str, chom_url: str) -> Demo:
    """Everything `make demo` runs besides CHOM itself, wired to the local fleet's bridge."""
    import secrets

    from backups.localstack import start_s3
    from fleet import localfleet
    from observability.localstack import start_monitoring

    network = localfleet.network_up(bridge, subnet)
    demo = Demo(env={}, stoppers=[], description=[])
    try:
        pebble = start_pebble(var_dir / "demo" / "pebble", listen_ip=network.gateway, validation_port=80)
        demo.stoppers.append(pebble.stop)
        demo.env.update(
            ACME_DIRECTORY_URL=pebble.directory_url,
            ACME_CA_BUNDLE_FILE=str(pebble.ca_bundle),
            LOCAL_DNS_MANAGEMENT_URL=pebble.dns_management_url,
        )
        demo.description.append(f"ACME CA (pebble): {pebble.directory_url}")
        # Under var/, never the repository root: new on every start, like pebble's root itself.
        root = var_dir / "demo" / "demo-root.pem"
        root.write_text(pebble.issuing_root())
        demo.description.append(f"  its issuing root, to verify the demo's HTTPS: curl --cacert {root} ...")
        env, stop, description = start_monitoring(
            var_dir / "demo" / "monitoring",
            chom_url=chom_url,
            listen_ip=network.gateway,
            sd_token=secrets.token_urlsafe(24),
            webhook_token=secrets.token_urlsafe(24),
            interval=DEMO_SCRAPE_SECONDS,
        )
        demo.stoppers.append(stop)
        demo.env.update(env)
        demo.description += description
        env, stop, description = start_s3(var_dir / "demo" / "s3")
        demo.stoppers.append(stop)
        demo.env.update(env)
        demo.description += description
    except BaseException:
        demo.stop()
        raise
    return demo
