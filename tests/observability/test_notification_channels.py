"""Tenants' notification channels: created, listed and deleted by the right people, refused when
the URL points inside our network, and site events (a failed deploy, as sites/deploy.py emits it)
delivered to a Slack-compatible receiver and a generic webhook whose HMAC signature checks out —
retried with the last error visible, and a test button that sends a sample."""

import hashlib
import hmac
import json
import socket
import threading
import time

import pytest
from django.core import mail
from django.db import connection

from chom.events import event_emit
from observability.models import ChannelDelivery, NotificationChannel
from observability.notifications import MAX_CHANNELS_PER_TENANT, channel_deliveries_send, send_deadline
from tests.observability.factories import make_site, make_vps
from tests.observability.fakes import FakeChatWebhook, FakeServer

CHANNELS = "/api/v1/notification-channels"


class FakeReceiver(FakeServer):
    """A generic webhook receiver: takes any JSON POST."""

    def handle(self, request):
        return (200, {"ok": True}) if request.method == "POST" else (405, {})


@pytest.fixture
def local_receivers(settings):
    """Receivers on 127.0.0.1, which this installation allows (as tests allow a local git server)."""
    settings.REPOSITORY_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    slack, generic = FakeChatWebhook(), FakeReceiver()
    yield slack, generic
    slack.close()
    generic.close()


def _create(persona, **body):
    return persona.client().post(CHANNELS, body, format="json")


def test_it_lets_owners_create_members_read_and_outsiders_see_nothing(alice, bob, victor, charlie, staff):
    created = _create(alice, kind="email", address="ops@acme.test", events=["deploy.failed", "site.down"])
    assert created.status_code == 201, created.content
    channel = created.json()
    assert channel["target"] == "ops@acme.test" and channel["secret"] is None
    assert channel["events"] == ["deploy.failed", "site.down"]

    for reader in (bob, victor):
        listed = reader.client().get(CHANNELS)
        assert [c["id"] for c in listed.json()["results"]] == [channel["id"]]
        assert reader.client().get(f"{CHANNELS}/{channel['id']}").status_code == 200
    assert _create(bob, kind="email", address="bob@acme.test", events=["deploy.failed"]).status_code == 403
    assert bob.client().delete(f"{CHANNELS}/{channel['id']}").status_code == 403

    assert charlie.client().get(CHANNELS).json()["results"] == []
    assert charlie.client().get(f"{CHANNELS}/{channel['id']}").status_code == 404
    assert charlie.client().delete(f"{CHANNELS}/{channel['id']}").status_code == 404
    assert charlie.client().post(f"{CHANNELS}/{channel['id']}/test").status_code == 404
    assert staff.client().get(CHANNELS).status_code == 403

    assert alice.client().delete(f"{CHANNELS}/{channel['id']}").status_code == 204
    assert not NotificationChannel.objects.exists()


def test_it_refuses_a_private_or_plain_http_url(alice, settings):
    settings.REPOSITORY_ALLOWED_NETWORKS = []
    for url in (
        "https://10.0.0.5/hooks/x",
        "https://169.254.169.254/latest/meta-data",
        "https://127.0.0.1:8443/hook",
        "http://127.0.0.1:9/hook",
        "http://hooks.example.com/x",
    ):
        refused = _create(alice, kind="webhook", url=url, events=["deploy.failed"])
        assert refused.status_code == 400, url
        assert refused.json()["error"]["fields"]["url"], url
    assert not NotificationChannel.objects.exists()


def test_it_keeps_urls_and_secrets_encrypted_at_rest(alice, local_receivers):
    _, generic = local_receivers
    url = f"{generic.url}/hooks/acme-private-path"
    created = _create(alice, kind="webhook", url=url, events=["deploy.failed"])
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert secret and url not in json.dumps(created.json())
    assert "acme-private-path" not in json.dumps(alice.client().get(CHANNELS).json())
    assert "secret" not in alice.client().get(f"{CHANNELS}/{created.json()['id']}").json()
    with connection.cursor() as cursor:
        cursor.execute("SELECT target, secret FROM observability_notificationchannel")
        stored_target, stored_secret = cursor.fetchone()
    assert "acme-private-path" not in stored_target and secret not in stored_secret
    channel = NotificationChannel.objects.get()
    assert (channel.target, channel.secret) == (url, secret)


def test_it_delivers_a_deploy_failure_to_slack_and_a_signed_webhook(
    alice, local_receivers, django_capture_on_commit_callbacks
):
    slack, generic = local_receivers
    assert (
        _create(
            alice, kind="slack", url=f"{slack.url}/services/T0/B0/x", events=["deploy.failed"]
        ).status_code
        == 201
    )
    signed = _create(
        alice, kind="webhook", url=f"{generic.url}/chom", events=["deploy.failed", "deploy.succeeded"]
    )
    secret = signed.json()["secret"]
    _create(alice, kind="email", address="ops@acme.test", events=["deploy.succeeded"])  # does not want it
    site = make_site(alice.tenant, make_vps(), "shop.example.com")

    with django_capture_on_commit_callbacks() as callbacks:
        event_emit(
            event="deploy.failed", tenant=site.tenant, site=site, message="Deploy failed: nginx -t failed"
        )
    assert len(callbacks) == 1  # delivery is enqueued as soon as the event is committed
    assert channel_deliveries_send() == {"sent": 2, "failed": 0, "retry": 0}
    assert channel_deliveries_send() == {"sent": 0, "failed": 0, "retry": 0}
    assert not mail.outbox

    [chat] = slack.requests
    assert "deploy.failed" in chat.body["text"] and "shop.example.com" in chat.body["text"]
    [hook] = generic.requests
    assert hook.body["event"] == "deploy.failed" and hook.body["site"] == "shop.example.com"
    assert hook.body["message"] == "Deploy failed: nginx -t failed" and hook.body["occurred_at"]
    timestamp = hook.headers["x-chom-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + hook.raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(hook.headers["x-chom-signature"], f"sha256={expected}")


def test_it_retries_with_the_last_error_visible_until_the_receiver_takes_it(alice, local_receivers):
    _, generic = local_receivers
    channel = _create(alice, kind="webhook", url=f"{generic.url}/chom", events=["deploy.succeeded"]).json()
    site = make_site(alice.tenant, make_vps(), "shop.example.com")
    event_emit(event="deploy.succeeded", tenant=site.tenant, site=site, message="Release r2 is live.")

    generic.fail(500)
    assert channel_deliveries_send() == {"sent": 0, "failed": 0, "retry": 1}
    [shown] = alice.client().get(f"{CHANNELS}/{channel['id']}").json()["deliveries"]
    assert shown["status"] == "pending" and shown["attempts"] == 1
    assert "500" in shown["error"]

    generic.fail_status = None
    assert channel_deliveries_send() == {"sent": 1, "failed": 0, "retry": 0}
    [shown] = alice.client().get(f"{CHANNELS}/{channel['id']}").json()["deliveries"]
    assert (shown["status"], shown["attempts"], shown["error"]) == ("sent", 2, "")
    assert len(generic.requests) == 2


def test_it_gives_up_after_the_last_attempt(alice, local_receivers):
    _, generic = local_receivers
    _create(alice, kind="webhook", url=f"{generic.url}/chom", events=["site.down"])
    event_emit(event="site.down", tenant=alice.tenant, message="shop.example.com does not answer")
    generic.fail(503)
    for _ in range(4):
        assert channel_deliveries_send()["retry"] == 1
    assert channel_deliveries_send()["failed"] == 1
    assert ChannelDelivery.objects.get().status == "failed"


def test_it_sends_a_sample_with_the_test_button(alice, bob, local_receivers):
    slack, _ = local_receivers
    channel = _create(
        alice, kind="slack", url=f"{slack.url}/services/T0/B0/x", events=["deploy.failed"]
    ).json()
    assert bob.client().post(f"{CHANNELS}/{channel['id']}/test").status_code == 403
    sent = alice.client().post(f"{CHANNELS}/{channel['id']}/test")
    assert sent.status_code == 200 and sent.json()["status"] == "sent"
    assert "test notification" in slack.requests[0].body["text"]

    slack.fail(500)
    failed = alice.client().post(f"{CHANNELS}/{channel['id']}/test").json()
    assert failed["status"] == "pending" and "500" in failed["error"]


def test_it_emails_an_email_channel(alice):
    _create(alice, kind="email", address="ops@acme.test", events=["backup.failed"])
    event_emit(event="backup.failed", tenant=alice.tenant, message="The nightly backup failed.")
    assert channel_deliveries_send()["sent"] == 1
    [message] = mail.outbox
    assert message.to == ["ops@acme.test"] and "backup.failed" in message.subject


def test_it_sends_an_event_at_once_without_waiting_for_other_tenants_pending_deliveries(
    alice, charlie, local_receivers, django_capture_on_commit_callbacks
):
    """The task queued with an event sends that event's rows only: a co-tenant's backlog (a
    receiver that hangs until the client's timeout) is the beat job's, not in front of ours."""
    from chom.celery import app

    slack, generic = local_receivers
    _create(charlie, kind="webhook", url=f"{generic.url}/theirs", events=["site.down"])
    event_emit(event="site.down", tenant=charlie.tenant, message="theirs, pending")  # not sent yet
    _create(alice, kind="slack", url=f"{slack.url}/services/T0/B0/x", events=["deploy.failed"])
    site = make_site(alice.tenant, make_vps(), "shop.example.com")

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True  # the queued task runs here, as the worker would run it
    try:
        with django_capture_on_commit_callbacks(execute=True):
            event_emit(event="deploy.failed", tenant=site.tenant, site=site, message="Deploy failed: x")
    finally:
        app.conf.task_always_eager = eager
    assert len(slack.requests) == 1 and generic.requests == []
    theirs = ChannelDelivery.objects.get(channel__tenant=charlie.tenant)
    assert (theirs.status, theirs.attempts) == ("pending", 0)
    assert channel_deliveries_send() == {"sent": 1, "failed": 0, "retry": 0}  # the beat job's run


class Tarpit:
    """A receiver that accepts connections and never answers (a hung or hostile endpoint); with
    DRIP it sends a byte of a status line now and then, so no single read ever times out. Every
    connection it holds is closed by close()."""

    def __init__(self, drip: float | None = None):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.drip = drip
        self.held: list[socket.socket] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn = self.listener.accept()[0]
            except OSError:
                return
            self.held.append(conn)
            if self.drip:
                threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\n" * 100:
            if self.closed.wait(self.drip):
                return
            try:
                conn.send(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.closed.set()
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self.listener.close()
        for conn in self.held:
            conn.close()
        self.thread.join(timeout=5)


@pytest.fixture
def tarpit(settings):
    settings.REPOSITORY_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    pit = Tarpit()
    yield pit
    pit.close()


def _send_event_as_the_worker(django_capture_on_commit_callbacks, **event) -> float:
    """Emit EVENT and run the task it queues here, as the notify worker would; its seconds."""
    from chom.celery import app

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    started = time.monotonic()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            event_emit(**event)
    finally:
        app.conf.task_always_eager = eager
    return time.monotonic() - started


def test_it_sends_a_batch_of_hung_receivers_at_once_within_seconds(
    alice, tarpit, local_receivers, django_capture_on_commit_callbacks, settings
):
    """A tenant's every channel but one points at receivers that accept and never answer: the
    event's batch takes one read timeout, not one per channel, the healthy channel gets it, the
    others say "timed out" and are retried by the beat job the same way."""
    settings.OBSERVABILITY_NOTIFY_CONNECT_TIMEOUT, settings.OBSERVABILITY_NOTIFY_READ_TIMEOUT = 3.0, 5.0
    slack, _ = local_receivers
    hung = MAX_CHANNELS_PER_TENANT - 1
    for n in range(hung):
        assert (
            _create(alice, kind="webhook", url=f"{tarpit.url}/hook{n}", events=["deploy.failed"]).status_code
            == 201
        )
    assert (
        _create(
            alice, kind="slack", url=f"{slack.url}/services/T0/B0/x", events=["deploy.failed"]
        ).status_code
        == 201
    )
    site = make_site(alice.tenant, make_vps(), "shop.example.com")

    took = _send_event_as_the_worker(
        django_capture_on_commit_callbacks,
        event="deploy.failed", tenant=site.tenant, site=site, message="Deploy failed: x",
    )  # fmt: skip
    assert took < send_deadline(), took  # sequentially: 19 × 5 s
    assert len(tarpit.held) == hung  # every receiver was asked, all at once
    [chat] = slack.requests
    assert "deploy.failed" in chat.body["text"]
    rows = ChannelDelivery.objects.filter(channel__kind="webhook")
    assert {(r.status, r.attempts) for r in rows} == {("pending", 1)}
    assert all(r.error.startswith("timed out") for r in rows), rows[0].error
    assert ChannelDelivery.objects.get(channel__kind="slack").status == "sent"

    started = time.monotonic()
    assert channel_deliveries_send() == {"sent": 0, "failed": 0, "retry": hung}  # the beat job's retry
    assert time.monotonic() - started < send_deadline()
    assert len(tarpit.held) == 2 * hung and len(slack.requests) == 1
    assert {(r.status, r.attempts) for r in rows.all()} == {("pending", 2)}


def test_it_gives_a_batch_a_total_deadline_even_when_every_read_gets_a_byte(alice, settings):
    """A receiver trickling its answer a byte at a time never trips the read timeout: the batch's
    deadline still ends the wait, and the delivery says it timed out."""
    settings.REPOSITORY_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.OBSERVABILITY_NOTIFY_CONNECT_TIMEOUT, settings.OBSERVABILITY_NOTIFY_READ_TIMEOUT = 0.5, 1.0
    drip = Tarpit(drip=0.3)
    try:
        _create(alice, kind="webhook", url=f"{drip.url}/slow", events=["site.down"])
        event_emit(event="site.down", tenant=alice.tenant, message="shop.example.com does not answer")
        started = time.monotonic()
        assert channel_deliveries_send() == {"sent": 0, "failed": 0, "retry": 1}
        took = time.monotonic() - started
    finally:
        drip.close()
    assert send_deadline() - 0.2 < took < send_deadline() + 1.5, took
    delivery = ChannelDelivery.objects.get()
    assert delivery.error == f"timed out: the receiver did not answer within {send_deadline():g} s"


def test_it_routes_deliveries_and_their_retries_to_the_notify_queue():
    from chom.celery import app
    from chom.schedules import BEAT_SCHEDULE

    for task in ("observability.send_channel_deliveries", "observability.deliver_notifications"):
        assert app.amqp.router.route({}, task)["queue"].name == "notify", task
    assert app.amqp.router.route({}, "observability.write_sd_file")["queue"].name == "default"
    assert BEAT_SCHEDULE["observability-deliver-notifications"]["options"]["queue"] == "notify"
