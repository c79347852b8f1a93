"""Cron schedules: parse the five-field syntax (and the @ shortcuts) and convert it to systemd
`OnCalendar=` expressions, which is how a site's cron jobs run on the VPS (systemd timers in the
site's slice). Pure functions, no I/O: the VPS checks the result again with
`systemd-analyze calendar` before installing it.

Day of month and day of week follow Debian's (Vixie) cron: when both fields are restricted, a
job runs on days matching EITHER; a field counts as unrestricted when it starts with `*` (so
`*/2` in one of them keeps the AND of the other). systemd ANDs the weekday with the date within
one expression but ORs several `OnCalendar=` lines, so the OR case becomes two lines.
"""

import re
from dataclasses import dataclass

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
SYSTEMD_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


@dataclass(frozen=True)
class Field:
    label: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the value of names[0]


FIELDS = (
    Field("minute", 0, 59),
    Field("hour", 0, 23),
    Field("day of month", 1, 31),
    Field("month", 1, 12, MONTHS, 1),
    Field("day of week", 0, 7, DAYS, 0),
)
_ITEM = re.compile(r"(?P<base>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?")


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday (cron's 7 is folded into 0)
    days_star: bool  # the field started with `*`: see the module docstring
    weekdays_star: bool

    def on_calendar(self) -> list[str]:
        """The OnCalendar= lines whose union is this schedule."""
        time = f"{_values(self.hours, 0, 23)}:{_values(self.minutes, 0, 59)}:00"
        month = _values(self.months, 1, 12)
        days = _values(self.days, 1, 31)
        weekdays = _weekdays(self.weekdays)
        if self.days_star or self.weekdays_star:
            prefix = "" if len(self.weekdays) == 7 else f"{weekdays} "
            return [f"{prefix}*-{month}-{days} {time}"]
        return [f"{weekdays} *-{month}-* {time}", f"*-{month}-{days} {time}"]


def parse(text: str) -> Schedule:
    """SCHEDULE or ScheduleError with a message a person can act on."""
    if not isinstance(text, str) or len(text) > 100:
        raise ScheduleError("A schedule is text of at most 100 characters.")
    if re.search(r"[^\x20-\x7e]", text):
        raise ScheduleError("A schedule is one line of printable ASCII: fields separated by spaces.")
    spec = text.strip().lower()
    if spec == "@reboot":
        raise ScheduleError("@reboot is not supported: jobs run on a schedule, not at boot.")
    if spec.startswith("@"):
        if spec not in MACROS:
            raise ScheduleError(f"Unknown shortcut {text.strip()!r}; use one of {', '.join(MACROS)}.")
        spec = MACROS[spec]
    parts = spec.split()
    if len(parts) != 5:
        raise ScheduleError(
            "A schedule has five fields (minute hour day-of-month month day-of-week), "
            f"or is one of {', '.join(MACROS)}; got {len(parts)} field(s)."
        )
    values = [_field(part, field) for part, field in zip(parts, FIELDS, strict=True)]
    weekdays = frozenset(0 if day == 7 else day for day in values[4])
    return Schedule(
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        days_star=parts[2].startswith("*"),
        weekdays_star=parts[4].startswith("*"),
    )


def on_calendar(text: str) -> list[str]:
    return parse(text).on_calendar()


def _field(text: str, field: Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if not match:
            raise ScheduleError(f"The {field.label} field has an invalid item {item!r}.")
        values.update(_item(match["base"], match["step"], field))
    return frozenset(values)


def _item(base: str, step: str | None, field: Field) -> range:
    if base == "*":
        low, high = field.low, field.high
    elif "-" in base:
        low, high = (_value(part, field) for part in base.split("-"))
        if low > high:
            raise ScheduleError(f"The {field.label} range {base} runs backwards.")
    else:
        if step is not None:
            raise ScheduleError(f"A step in the {field.label} field needs a range or * (e.g. */{step}).")
        low = high = _value(base, field)
    size = field.high - field.low + 1
    stride = 1 if step is None else int(step)
    if not 1 <= stride <= size:
        raise ScheduleError(f"The {field.label} step must be between 1 and {size}.")
    return range(low, high + 1, stride)


def _value(text: str, field: Field) -> int:
    if text in field.names:
        return field.names.index(text) + field.name_base
    if not text.isdigit() or len(text) > 2:
        names = f" or a name ({', '.join(field.names)})" if field.names else ""
        raise ScheduleError(f"The {field.label} field takes {field.low}-{field.high}{names}, not {text!r}.")
    value = int(text)
    if not field.low <= value <= field.high:
        raise ScheduleError(f"The {field.label} field takes {field.low}-{field.high}, not {value}.")
    return value


def _values(values: frozenset[int], low: int, high: int) -> str:
    """systemd's spelling of a set of values: `*`, `start/step` for a whole-field repetition, else
    a list of values and `a..b` runs, two digits each."""
    ordered = sorted(values)
    if ordered == list(range(low, high + 1)):
        return "*"
    if len(ordered) >= 3:
        step = ordered[1] - ordered[0]
        if step > 1 and ordered == list(range(ordered[0], high + 1, step)):
            return f"{ordered[0]:02d}/{step}"
    return ",".join(
        f"{a:02d}" if a == b else f"{a:02d}..{b:02d}" if b > a + 1 else f"{a:02d},{b:02d}"
        for a, b in _runs(ordered)
    )


def _weekdays(values: frozenset[int]) -> str:
    # Monday first, as systemd orders weekdays, so that a run like Sat..Sun never wraps.
    ordered = sorted(values, key=lambda day: (day + 6) % 7)
    keys = [(day + 6) % 7 for day in ordered]
    parts = []
    for a, b in _runs(keys):
        first, last = SYSTEMD_DAYS[(a + 1) % 7], SYSTEMD_DAYS[(b + 1) % 7]
        parts.append(first if a == b else f"{first}..{last}" if b > a + 1 else f"{first},{last}")
    return ",".join(parts)


def _runs(ordered: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for value in ordered:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs
