"""Argument parsing shared by the maintenance commands (export_calls, estimate_cost, purge_calls).

The leading underscore keeps Django from listing this module as a command.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

_AGE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$", re.IGNORECASE)
_AGE_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_bound(value: str | None, option: str, *, end: bool = False) -> datetime | None:
    """`2026-01-31` or `2026-01-31T10:00[:00][Z|±hh:mm]` → an aware datetime in the current time zone.

    A bare date used as an upper bound (`end=True`) means the whole day, so the bound becomes the
    next midnight and callers compare with `<`.
    """
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        moment = parse_datetime(text.replace(" ", "T", 1)) if ("T" in text or " " in text) else None
        day = None if moment else parse_date(text)
    except ValueError:
        moment = day = None
    if moment is None and day is None:
        raise CommandError(
            f"{option} {value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]."
        )
    if moment is None:
        assert isinstance(day, date)
        moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def parse_window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start = parse_bound(since, "--since")
    stop = parse_bound(until, "--until", end=True)
    if start and stop and start >= stop:
        raise CommandError(f"--since ({since}) must be before --until ({until}).")
    return start, stop


def parse_age(value: str) -> timedelta:
    """`90d`, `12h`, `2w` → timedelta. Zero is refused: it would mean "everything that has ended"."""
    match = _AGE.match(value or "")
    if not match:
        raise CommandError(f"--older-than {value!r}: use a number and a unit, e.g. 90d, 12h or 2w.")
    amount, unit = int(match.group(1)), match.group(2).lower()
    if amount <= 0:
        raise CommandError("--older-than must be more than zero.")
    return timedelta(**{_AGE_UNITS[unit]: amount})
