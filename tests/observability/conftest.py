import pytest

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
