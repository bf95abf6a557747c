"""The warm transfer's whisper: what the person taking a transferred call hears before the caller is connected.
Pure: no I/O.

Built by the bridge when the call ends as transferred, from what it already holds (the conversation's lines and
the reason the model gave `transfer_call`, or the key the caller pressed), and stored on the Call row
(`Call.transfer_summary`) for the webhook's whisper TwiML. Short on purpose: it is spoken before the caller
waits on the line; no phone number is ever in it.
"""

from __future__ import annotations

import json
import re

__all__ = ["MAX_SUMMARY_CHARS", "reason_from_arguments", "transfer_summary"]

MAX_SUMMARY_CHARS = 400
CALLER_LINES = 2  # the caller's last lines quoted
_SPACES = re.compile(r"\s+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def reason_from_arguments(arguments: str) -> str:
    """The `reason` argument of a transfer_call, or "" when absent or not JSON."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return ""
    reason = parsed.get("reason") if isinstance(parsed, dict) else None
    return reason if isinstance(reason, str) else ""


def _clean(text: str, limit: int) -> str:
    text = _PHONE.sub("a number", _SPACES.sub(" ", text).strip())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def transfer_summary(agent_name: str, transcript: list[tuple[str, str]], reason: str) -> str:
    """One or two sentences: who transfers, why, and what the caller said last."""
    parts = [f"A call transferred by the {_clean(agent_name, 60) or 'voice'} assistant."]
    if reason.strip():
        parts.append(f"Reason: {_clean(reason, 160).rstrip('.')}.")
    said = [text for role, text in transcript if role == "caller" and text.strip()][-CALLER_LINES:]
    if said:
        parts.append("The caller said: " + " … ".join(f"“{_clean(text, 120)}”" for text in said))
    summary = " ".join(parts)
    return summary if len(summary) <= MAX_SUMMARY_CHARS else summary[: MAX_SUMMARY_CHARS - 1] + "…"
