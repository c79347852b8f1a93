import shutil

import pytest
import requests

from devstack.monitoring import ALERTMANAGER
from devstack.processes import free_port, spawn, stop_processes, wait_http
from tests.observability.fakes import FakeChatWebhook, FakeGrafana, FakeLoki


@pytest.fixture
def loki(settings):
    fake = FakeLoki()
    settings.LOKI_URL = fake.url
    yield fake
    fake.close()


@pytest.fixture
def grafana(settings):
    fake = FakeGrafana()
    settings.GRAFANA_URL, settings.GRAFANA_TOKEN = fake.url, fake.token
    yield fake
    fake.close()


@pytest.fixture
def chat(settings):
    fake = FakeChatWebhook()
    settings.ALERT_WEBHOOK_URLS = [f"{fake.url}/hooks/T000/B000/secret"]
    yield fake
    fake.close()


class Alertmanager:
    """A real Alertmanager (Debian's package) with a receiver that sends nowhere."""

    def __init__(self, url: str):
        self.url = url

    def api(self, method: str, path: str, **kwargs):
        response = requests.request(method, f"{self.url}/api/v2{path}", timeout=5, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def fire(self, labels: dict[str, str]) -> None:
        self.api("POST", "/alerts", json=[{"labels": labels}])

    def silenced_by(self, labels: dict[str, str]) -> list[str]:
        """The silences Alertmanager itself says mute the alert with LABELS (fired before)."""
        for alert in self.api("GET", "/alerts"):
            if alert["labels"] == labels:
                return sorted(alert["status"]["silencedBy"])
        raise AssertionError(f"Alertmanager has no alert {labels}")

    def silence(self, silence_id: str) -> dict:
        return self.api("GET", f"/silence/{silence_id}")

    def expire_all(self) -> None:
        for silence in self.api("GET", "/silences"):
            if silence["status"]["state"] != "expired":
                self.api("DELETE", f"/silence/{silence['id']}")


@pytest.fixture(scope="session")
def alertmanager_process(tmp_path_factory):
    if not shutil.which(ALERTMANAGER):
        pytest.skip("apt-get install prometheus-alertmanager")
    folder = tmp_path_factory.mktemp("alertmanager")
    (folder / "alertmanager.yml").write_text(
        '{"route": {"receiver": "nowhere"}, "receivers": [{"name": "nowhere"}]}'
    )
    url, log = f"http://127.0.0.1:{free_port()}", folder / "alertmanager.log"
    proc = spawn(
        [ALERTMANAGER, f"--config.file={folder / 'alertmanager.yml'}", f"--storage.path={folder / 'data'}",
         f"--web.listen-address={url.removeprefix('http://')}", "--cluster.listen-address="],
        log,
    )  # fmt: skip
    try:
        wait_http(f"{url}/-/ready", proc, log)
        yield Alertmanager(url)
    finally:
        stop_processes([proc])


@pytest.fixture
def alertmanager(alertmanager_process, settings):
    """ALERTMANAGER_URL points at the real Alertmanager; every test starts with nothing silenced."""
    settings.ALERTMANAGER_URL = alertmanager_process.url
    alertmanager_process.expire_all()
    return alertmanager_process
