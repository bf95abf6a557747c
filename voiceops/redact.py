"""What logs, traces and pages may show of a phone number or a secret. No Django import: the logging
formatter and the tracer use it before (and outside) Django's setup."""

from __future__ import annotations

import re

# E.164 as Twilio sends From/To ("+14155550100"), anywhere in free text or an error message.
E164 = re.compile(r"(?<![\w+])\+\d{7,15}(?!\w)")
_NUMBER = re.compile(r"\+?\d+")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


def mask_phone(number: object) -> str:
    """+14155550123 → +1415•••0123: enough to tell calls apart in logs, not enough to dial. Anything that
    is not a number (a SIP or client address) is hidden whole."""
    text = "" if number is None else str(number).strip()
    if not text:
        return ""
    if not _NUMBER.fullmatch(text):
        return "•••"
    if len(text) <= 6:
        return "•" * len(text)
    return text[:5] + "•••" + text[-4:]


def scrub_text(text: str, limit: int | None = None) -> str:
    """Masks E.164 numbers and bearer/OpenAI keys in free text; caps its length when `limit` is given."""
    text = E164.sub(lambda match: mask_phone(match.group()), text)
    text = _BEARER.sub("Bearer ***", text)
    text = _OPENAI_KEY.sub("sk-***", text)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
