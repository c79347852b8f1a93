"""The Alertmanager client against the real daemon (Debian's prometheus-alertmanager): what it
creates is what Alertmanager applies, and its refusals come back with Alertmanager's reason."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from devstack.processes import free_port
from observability.clients import NotConfigured
from observability.clients import alertmanager as am

pytestmark = pytest.mark.real

LABELS = {"alertname": "DiskFull", "vps": "web-1", "severity": "critical"}


def _silence(matchers, *, minutes=60, comment="disk is being replaced"):
    now = timezone.now()
    return am.silence_create(
        matchers=matchers,
        starts_at=now,
        ends_at=now + timedelta(minutes=minutes),
        created_by="ops@chom.test",
        comment=comment,
    )


def test_it_creates_a_silence_that_alertmanager_lists_as_active(alertmanager):
    silence_id = _silence([am.Matcher("alertname", "DiskFull"), am.Matcher("vps", "web-1")], minutes=90)
    [listed] = am.silences()
    assert listed.id == silence_id and listed.state == "active"
    assert listed.matchers == (am.Matcher("alertname", "DiskFull"), am.Matcher("vps", "web-1"))
    assert (listed.created_by, listed.comment) == ("ops@chom.test", "disk is being replaced")
    assert timedelta(minutes=89) < listed.ends_at - timezone.now() <= timedelta(minutes=90)
    assert am.silence_get(silence_id=silence_id) == listed


@pytest.mark.parametrize(
    "matchers",
    [
        [am.Matcher("alertname", "DiskFull"), am.Matcher("vps", "web-1")],
        [am.Matcher("vps", "web-[0-9]+", is_regex=True)],
        [am.Matcher("alertname", "DiskFull"), am.Matcher("vps", "web-2", is_equal=False)],
        [am.Matcher("vps", "web-1", is_equal=False)],
        [am.Matcher("vps", "web", is_regex=True)],  # anchored: "web" does not match "web-1"
        [am.Matcher("alertname", "DiskFull"), am.Matcher("site", "")],  # missing label = empty string
    ],
    ids=["equal", "regex", "not-equal", "not-equal-misses", "regex-anchored", "missing-label"],
)
def test_it_judges_a_silence_as_alertmanager_does(alertmanager, matchers):
    """The dashboard shows "silenced until" from its own matching: it must agree with Alertmanager."""
    alertmanager.fire(LABELS)
    silence_id = _silence(matchers)
    [silence] = [s for s in am.silences() if s.id == silence_id]
    muted_by_alertmanager = alertmanager.silenced_by(LABELS) == [silence_id]
    assert silence.matches(LABELS) is muted_by_alertmanager


def test_it_expires_a_silence_and_expiring_it_again_changes_nothing(alertmanager):
    silence_id = _silence([am.Matcher("alertname", "DiskFull")])
    am.silence_expire(silence_id=silence_id)
    assert am.silences() == []
    assert silence_id in [s.id for s in am.silences(states=("expired",))]
    ended = alertmanager.silence(silence_id)["endsAt"]
    am.silence_expire(silence_id=silence_id)
    assert alertmanager.silence(silence_id)["endsAt"] == ended


def test_it_says_an_unknown_silence_is_not_found(alertmanager):
    unknown = str(uuid.uuid4())
    with pytest.raises(am.SilenceNotFound) as expire:
        am.silence_expire(silence_id=unknown)
    with pytest.raises(am.SilenceNotFound):
        am.silence_get(silence_id=unknown)
    assert expire.value.permanent and expire.value.status == 404


def test_it_passes_alertmanagers_refusal_on_as_permanent(alertmanager):
    now = timezone.now()
    with pytest.raises(am.AlertmanagerError) as refused:
        am.silence_create(
            matchers=[am.Matcher("alertname", "DiskFull")],
            starts_at=now,
            ends_at=now - timedelta(minutes=1),
            created_by="ops@chom.test",
            comment="backwards",
        )
    assert refused.value.permanent and refused.value.status == 400
    assert "start time must be before end time" in refused.value.message


def test_it_reports_an_unreachable_alertmanager_as_worth_retrying(settings):
    settings.ALERTMANAGER_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(am.AlertmanagerError) as down:
        am.silences()
    assert not down.value.permanent and "unreachable" in down.value.message


def test_it_refuses_to_call_an_unconfigured_alertmanager(settings):
    settings.ALERTMANAGER_URL = ""
    with pytest.raises(NotConfigured, match="ALERTMANAGER_URL"):
        am.silences()
