"""Template filters shared by the admin and the dashboard."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import template

from calls.services import mask_phone

register = template.Library()


@register.filter
def mmss(t_ms: Any) -> str:
    """Milliseconds since the call started → m:ss (h:mm:ss past an hour)."""
    try:
        total = max(0, int(t_ms)) // 1000
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


@register.filter
def duration(seconds: Any) -> str:
    """Whole seconds → m:ss; empty for calls that have no duration yet."""
    if seconds is None or seconds == "":
        return ""
    try:
        return mmss(int(seconds) * 1000)
    except (TypeError, ValueError):
        return ""


@register.filter
def masked(number: str) -> str:
    return mask_phone(number or "")


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@register.filter
def usd(amount: Any) -> str:
    """An estimated cost in dollars to four places (calls cost cents); empty when there is no estimate."""
    if amount is None or amount == "":
        return ""
    try:
        return f"${Decimal(str(amount)):,.4f}"
    except ArithmeticError:
        return ""
