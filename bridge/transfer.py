"""Transfers, the bridge's part. Pure: no I/O.

The warm transfer's whisper: what the person taking a transferred call hears before the caller is connected.
Built by the bridge when its stream ends for a transfer, from what it already holds (the conversation's lines and
the reason the model gave `transfer_call`, or the key the caller pressed), and stored on the Call row
(`Call.transfer_summary`) for the webhook's whisper TwiML. Short on purpose: it is spoken before the caller
waits on the line; no phone number is ever in it.

Back from a transfer nobody took (`calls.transfers`): what the agent is told on the call's next stream, and the
line it opens with.
"""

from __future__ import annotations

import json
import re

__all__ = ["BACK_LINE", "MAX_SUMMARY_CHARS", "back_from_transfer_note", "reason_from_arguments", "transfer_summary"]

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


# What the caller hears first when nobody took the transfer and the agent is back (said word for word).
BACK_LINE = "Sorry, nobody could take your call right now. I'm back with you: how else can I help?"
HISTORY_LINES = 20  # the conversation's latest lines, for an engine that cannot be given them as history
HISTORY_CHARS = 3000


def back_from_transfer_note(why: str, history: list[tuple[str, str]]) -> str:
    """The note that tells the model, at the start of its new session, that the transfer failed and why, so that
    it offers something else. `history`: the conversation so far, to quote when the engine cannot take it as
    conversation items (GPT-Live); empty when it already has it."""
    note = (f"(A note from the phone system, not the caller's words: your transfer of the caller to a colleague did "
            f"not go through: {why}. The caller is back on the line with you and is being told so now. Offer what "
            "you can do instead, for example take a message with their name, number and what it is about so that "
            "a colleague calls back. Transfer again only if the caller asks for it.)")
    if not history:
        return note
    lines = [f"{'Caller' if role == 'caller' else 'You'}: {_SPACES.sub(' ', text).strip()}"
             for role, text in history[-HISTORY_LINES:] if text.strip()]
    quoted = "\n".join(lines)
    if len(quoted) > HISTORY_CHARS:
        quoted = "…" + quoted[-(HISTORY_CHARS - 1):]
    return f"{note}\n(The conversation before the transfer:\n{quoted})"
