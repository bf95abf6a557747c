"""The dashboard's live feed contract, in one place: the channel-layer groups, the call summary, the
`call.update` message and what the browser receives. The bridge publishes the messages, the dashboard consumer
forwards them (and sends heartbeats), the views and the admin describe calls with the same summary. Pure: no
database access (a `Call` instance is read as is).

On the channel layer:

    {"type": "call.update", "call_id": 7, "what": "started" | "event" | "ended",
     "call": call_summary(call), "event": {"seq", "kind", "t_ms", "text", "data"} | None}

On the dashboard's WebSocket (static/voiceops/dashboard.js reads them):

    {"call_id": 7, "what": "started" | "event" | "ended", "call": {...}, "event": {...} | None}   # for_browser
    {"what": "heartbeat", "interval_s": 20}                                                        # heartbeat

A quiet line sends nothing, and a proxy or load balancer cuts a WebSocket that carries no frame for its idle
timeout (the ALB's is 60 s unless set; HAProxy's `timeout tunnel`, or `timeout client/server` without it): the
heartbeat, every `settings.LIVE_FEED_HEARTBEAT_S`, keeps the socket in use, and its absence tells the page that
the socket is dead even when no close reached it.
"""

from __future__ import annotations

from typing import Any

from calls.models import Call
from calls.services import mask_phone

ALL_CALLS_GROUP = "voiceops.calls"
MESSAGE_TYPE = "call.update"  # Channels dispatches it to the dashboard consumer's `call_update`
HEARTBEAT = "heartbeat"  # the `what` of the heartbeat: not about a call, the page only notes that it came


def call_group(call_id: int) -> str:
    return f"voiceops.call.{call_id}"


def call_summary(call: Call) -> dict[str, Any]:
    """The call as the live feed and the dashboard describe it (the caller's number masked).

    The config's name is the one the call ran with (its snapshot), so a later rename does not rewrite history."""
    return {
        "id": call.pk,
        "sid": call.twilio_call_sid,
        "from": mask_phone(call.from_number),
        "to": call.to_number,
        "config": (call.config_snapshot or {}).get("name", ""),
        "engine": call.engine,
        "status": call.status,
        "status_label": call.get_status_display(),
        "is_live": call.is_live,
        "started_at": call.started_at.isoformat() if call.started_at else None,
        "created_at": call.created_at.isoformat() if call.created_at else None,
        "duration_s": call.duration_s,
        "end_reason": call.end_reason,
        "end_reason_label": call.get_end_reason_display(),
        "cost_usd": str(call.cost_usd) if call.cost_usd is not None else None,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "is_test": call.is_test,
    }


def event(seq: int, kind: str, t_ms: int, text: str = "", data: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call event as stored (`services.add_events`) and as the feed carries it."""
    return {"seq": seq, "kind": kind, "t_ms": t_ms, "text": text, "data": data or {}}


def call_update(call: Call, what: str, call_event: dict[str, Any] | None = None) -> dict[str, Any]:
    """The channel-layer message for a change of `call`: it started, has a new event, or ended."""
    return {"type": MESSAGE_TYPE, "call_id": call.pk, "what": what, "event": call_event, "call": call_summary(call)}


def for_browser(update: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard's WebSocket sends for a `call.update` message (its channel-layer `type` left out)."""
    return {"call_id": update.get("call_id"), "what": update.get("what"), "call": update.get("call"),
            "event": update.get("event")}


def heartbeat(interval_s: int) -> dict[str, Any]:
    """The frame the dashboard's WebSocket sends every `interval_s` seconds: it says how often it comes, so the
    page can tell a dead socket from a quiet line."""
    return {"what": HEARTBEAT, "interval_s": interval_s}
