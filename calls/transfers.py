"""What happens when a transfer's <Dial> is over (Twilio's Dial action callback, DialCallStatus).

Answered: the person and the caller talked; the call ends when they hang up. Not answered (no-answer, busy,
failed, canceled): by default the caller goes back to the agent, on a fresh media stream of the same call (the
webhook answers with <Connect><Stream> and a new single-use token; `services.claim_stream` lets exactly one
stream claim the call in `TransferState.RETURNING`), and the agent is told why so it can offer something else.
The config may instead say that nobody could take the call and hang up (`AgentConfig.on_failed_transfer`), and
the caller goes back to the agent only while that can still be worth it: the caller is on the line, an agent can
answer, and some of the call's time limit is left.

The Call row is finalised once: here for an answered transfer or one that ends the call, else when the agent's
next stream ends (`services.finish_call`).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from calls import services
from calls.models import AgentConfig, Call

log = logging.getLogger(__name__)

ANSWERED_DIAL_STATUSES = frozenset({"completed", "answered"})
# Why nobody took the call, by DialCallStatus: for the agent, the events and the dashboard.
UNANSWERED_WHY = {
    "no-answer": "nobody answered",
    "busy": "the line was busy",
    "failed": "the call to the colleague could not be placed",
    "canceled": "the call to the colleague was cancelled before anyone answered",
}
# Less than this left of the call's time limit, and the caller is not brought back to the agent: there would
# be no time to help.
MIN_SECONDS_BACK_WITH_AGENT = 30


class AfterDial(enum.Enum):
    """What the caller's call does after the <Dial>."""

    HANG_UP = "hang_up"  # the transfer was answered: the conversation with the person is over
    SAY_UNANSWERED = "say_unanswered"  # nobody answered: say so, hang up
    BACK_TO_AGENT = "back_to_agent"  # nobody answered: a new media stream to the agent


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    action: AfterDial
    config_id: int = 0  # BACK_TO_AGENT: the new stream's config and number, for its token
    stream_number: int = 0
    why: str = ""  # why nobody answered, in words


def unanswered_why(dial_status: str) -> str:
    return UNANSWERED_WHY.get(dial_status, "nobody could take the call")


def _seconds_left(call: Call, now: datetime) -> float:
    limit = int((call.config_snapshot or {}).get("max_call_seconds") or 0)
    if not limit or call.started_at is None:
        return float(limit)
    return limit - (now - call.started_at).total_seconds()


def _no_return_because(call: Call, caller_status: str, agent_available: bool, now: datetime) -> str:
    """Why the caller cannot go back to the agent; "" when they can."""
    snapshot = call.config_snapshot or {}
    if call.end_reason or call.status in Call.TERMINAL:
        return "the call has already ended"
    if snapshot.get("on_failed_transfer", AgentConfig.FailedTransfer.RETURN_TO_AGENT) \
            != AgentConfig.FailedTransfer.RETURN_TO_AGENT:
        return "the config hangs up after a failed transfer"
    if caller_status in {"completed", "canceled", "failed", "busy", "no-answer"}:
        return "the caller hung up"
    if not agent_available or not snapshot.get("config_id"):
        return "no agent can answer"
    if _seconds_left(call, now) < MIN_SECONDS_BACK_WITH_AGENT:
        return "the call's time limit is reached"
    return ""


def _back_to_agent(call: Call, why: str) -> TransferOutcome:
    return TransferOutcome(AfterDial.BACK_TO_AGENT, int(call.config_snapshot["config_id"]), call.stream_count + 1, why)


@transaction.atomic
def transfer_ended(call_sid: str, dial_status: str, dial_seconds: str, caller_status: str,
                   agent_available: bool) -> TransferOutcome:
    """Record how the <Dial> of `call_sid` ended and decide what comes next. `caller_status` is the caller's
    CallStatus in the same request; `agent_available`: whether an agent could answer (OPENAI_API_KEY set).
    A repeated callback (Twilio retrying) gets the same decision and records nothing twice."""
    answered = dial_status in ANSWERED_DIAL_STATUSES
    call = Call.objects.select_for_update().filter(twilio_call_sid=call_sid).first()
    if call is None:
        return TransferOutcome(AfterDial.HANG_UP if answered else AfterDial.SAY_UNANSWERED)
    why = "" if answered else unanswered_why(dial_status)
    if call.transfer_state == Call.TransferState.RETURNING:  # a retry of the callback that sent the caller back
        return _back_to_agent(call, why)
    if call.transfer_state not in (Call.TransferState.DIALING, Call.TransferState.NONE):
        # Already decided: a retry or a late callback.
        return TransferOutcome(AfterDial.HANG_UP if answered else AfterDial.SAY_UNANSWERED, why=why)
    # DIALING; or NONE: a call a bridge from before this ended as transferred at its stream's end.
    now = timezone.now()
    call.transfer_dial_status = dial_status[:20]
    data = {"dial_status": dial_status, "duration_s": dial_seconds,
            "mode": call.config_snapshot.get("transfer_mode", "")}
    if answered:
        call.transfer_state = Call.TransferState.ANSWERED
        services.mark_ended(call, Call.EndReason.TRANSFERRED, now)
        outcome, text = TransferOutcome(AfterDial.HANG_UP), "Transfer answered"
    else:
        refused = _no_return_because(call, caller_status, agent_available, now)
        data["why"] = why
        if refused:
            call.transfer_state = Call.TransferState.UNANSWERED
            services.mark_ended(call, Call.EndReason.TRANSFERRED, now)
            data["back_to_agent"], data["not_back_because"] = False, refused
            outcome = TransferOutcome(AfterDial.SAY_UNANSWERED, why=why)
            text = f"Transfer not answered ({why}): the call ends"
        else:
            call.transfer_state = Call.TransferState.RETURNING
            data["back_to_agent"] = True
            outcome = _back_to_agent(call, why)
            text = f"Transfer not answered ({why}): back to the agent"
    call.save()
    services.add_status_event(call.pk, text, data)
    log.info("call %s: transfer ended (%s) → %s", call_sid, dial_status or "no status", outcome.action.value)
    return outcome
