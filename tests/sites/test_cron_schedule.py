"""Cron schedules → systemd OnCalendar= expressions: a table of valid schedules with the exact
expressions they become, and a table of invalid ones with the reason given. The converted
expressions are checked by the real `systemd-analyze calendar` too where it is installed."""

import shutil
import subprocess

import pytest

from sites import cron

VALID = [
    ("* * * * *", ["*-*-* *:*:00"]),
    ("*/5 * * * *", ["*-*-* *:00/5:00"]),
    ("*/7 * * * *", ["*-*-* *:00/7:00"]),
    ("0 * * * *", ["*-*-* *:00:00"]),
    ("30 4 * * *", ["*-*-* 04:30:00"]),
    ("0,30 9-17 * * *", ["*-*-* 09..17:00,30:00"]),
    ("5,6,7,8 * * * *", ["*-*-* *:05..08:00"]),
    ("0 9-17/2 * * *", ["*-*-* 09,11,13,15,17:00:00"]),
    ("15 10 * jan-mar *", ["*-01..03-* 10:15:00"]),
    ("0 0 1 */3 *", ["*-01/3-01 00:00:00"]),
    ("0 0 * * mon-fri", ["Mon..Fri *-*-* 00:00:00"]),
    ("0 0 * * 1-5", ["Mon..Fri *-*-* 00:00:00"]),
    ("0 0 * * 0", ["Sun *-*-* 00:00:00"]),
    ("0 0 * * 7", ["Sun *-*-* 00:00:00"]),
    ("0 0 * * SAT,SUN", ["Sat,Sun *-*-* 00:00:00"]),
    ("0 0 * * 5-7", ["Fri..Sun *-*-* 00:00:00"]),
    # Both day fields restricted: cron runs on days matching EITHER, so two OnCalendar= lines.
    ("30 4 1,15 * 5", ["Fri *-*-* 04:30:00", "*-*-01,15 04:30:00"]),
    ("0 0 1 * 1-5", ["Mon..Fri *-*-* 00:00:00", "*-*-01 00:00:00"]),
    ("0 12 13 * fri", ["Fri *-*-* 12:00:00", "*-*-13 12:00:00"]),
    ("0 0 1 6 1", ["Mon *-06-* 00:00:00", "*-06-01 00:00:00"]),
    # A field starting with * keeps the AND (Vixie cron's rule), even when it is a step.
    ("0 0 */2 * 1", ["Mon *-*-01/2 00:00:00"]),
    ("0 0 1 * */2", ["Tue,Thu,Sat,Sun *-*-01 00:00:00"]),
    ("@hourly", ["*-*-* *:00:00"]),
    ("@daily", ["*-*-* 00:00:00"]),
    ("@midnight", ["*-*-* 00:00:00"]),
    ("@weekly", ["Sun *-*-* 00:00:00"]),
    ("@monthly", ["*-*-01 00:00:00"]),
    ("@yearly", ["*-01-01 00:00:00"]),
    ("@annually", ["*-01-01 00:00:00"]),
    ("  0   0  * * *  ", ["*-*-* 00:00:00"]),
]

INVALID = [
    ("@reboot", "@reboot is not supported"),
    ("@every_minute", "Unknown shortcut"),
    ("* * * *", "five fields"),
    ("* * * * * *", "five fields"),
    ("", "five fields"),
    ("60 * * * *", "minute field takes 0-59, not 60"),
    ("* 24 * * *", "hour field takes 0-23"),
    ("* * 0 * *", "day of month field takes 1-31"),
    ("* * 32 * *", "day of month field takes 1-31"),
    ("* * * 13 *", "month field takes 1-12"),
    ("* * * * 8", "day of week field takes 0-7"),
    ("* * * foo *", "month field takes 1-12 or a name"),
    ("* * * * funday", "day of week field takes 0-7 or a name"),
    ("*/0 * * * *", "step must be between 1 and 60"),
    ("*/61 * * * *", "step must be between 1 and 60"),
    ("5/2 * * * *", "needs a range or *"),
    ("5-1 * * * *", "runs backwards"),
    ("1,,2 * * * *", "invalid item"),
    ("-1 * * * *", "invalid item"),
    ("* * * * mon/2", "needs a range or *"),
    ("0 0 * * 1;reboot", "invalid item"),
    ("0 0 * * $(id)", "invalid item"),
    ("0\n0 * * *", "one line of printable ASCII"),
    ("0\t0 * * *", "one line of printable ASCII"),
    ("0 0 * * mon\u00e9", "one line of printable ASCII"),
    ("x" * 101, "at most 100 characters"),
]


@pytest.mark.parametrize(("schedule", "expected"), VALID)
def test_it_converts_a_valid_schedule_to_on_calendar(schedule, expected):
    assert cron.on_calendar(schedule) == expected


@pytest.mark.parametrize(("schedule", "reason"), INVALID)
def test_it_refuses_an_invalid_schedule_with_a_reason(schedule, reason):
    with pytest.raises(cron.ScheduleError, match=reason.replace("*", r"\*")):
        cron.parse(schedule)


def test_it_keeps_cron_semantics_day_by_day():
    """Brute force over 2027: the days each schedule runs on, as cron decides them, equal the
    union of its OnCalendar lines as systemd reads them (weekday AND date within a line)."""
    import datetime

    def cron_runs(spec: cron.Schedule, day: datetime.date) -> bool:
        dom, dow = day.day in spec.days, (day.isoweekday() % 7) in spec.weekdays
        if day.month not in spec.months:
            return False
        if spec.days_star or spec.weekdays_star:
            return dom and dow
        return dom or dow

    names = dict(zip(cron.SYSTEMD_DAYS, range(7), strict=True))

    def line_runs(line: str, day: datetime.date) -> bool:
        parts = line.split(" ")
        weekdays = parts[0] if len(parts) == 3 else "*"
        date = parts[-2]
        ok = weekdays == "*" or any(_in(names, item, day.isoweekday() % 7) for item in weekdays.split(","))
        _, month, dom = date.split("-")
        return ok and _field_has(month, day.month) and _field_has(dom, day.day)

    start = datetime.date(2027, 1, 1)
    days = [start + datetime.timedelta(n) for n in range(365)]
    for schedule, _ in VALID:
        spec = cron.parse(schedule)
        for day in days:
            expected = cron_runs(spec, day)
            actual = any(line_runs(line, day) for line in spec.on_calendar())
            assert actual == expected, (schedule, day)


def _in(names: dict, item: str, weekday: int) -> bool:
    if ".." in item:
        low, high = (names[x] for x in item.split(".."))
        order = [(d + 6) % 7 for d in (low, high, weekday)]
        return order[0] <= order[2] <= order[1]
    return names[item] == weekday


def _field_has(text: str, value: int) -> bool:
    if text == "*":
        return True
    for item in text.split(","):
        if "/" in item:
            start, step = (int(x) for x in item.split("/"))
            if value >= start and (value - start) % step == 0:
                return True
        elif ".." in item:
            low, high = (int(x) for x in item.split(".."))
            if low <= value <= high:
                return True
        elif int(item) == value:
            return True
    return False


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_it_produces_expressions_systemd_accepts():
    expressions = sorted({line for schedule, _ in VALID for line in cron.on_calendar(schedule)})
    proc = subprocess.run(
        ["systemd-analyze", "calendar", "--", *expressions], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Normalized form:") == len(expressions)
