"""The OpenAI Realtime engine: `bridge.realtime_events` (the wire codec) spoken in the session's vocabulary.
Pure: no I/O."""

from __future__ import annotations

from typing import Any

from bridge import engine as ev
from bridge import realtime_events as rt

FATAL_ERROR_TYPES = frozenset({"server_error"})
# A race with the server's own cancel on barge-in: harmless.
IGNORED_ERROR_CODES = frozenset({"response_cancel_not_active"})
HANDOVER_NOTE = (
    "This phone call continues from an earlier session; the conversation so far is in the history. Do not "
    "greet the caller again: carry on where the conversation left off."
)
GOODBYE = (
    "The caller has been silent for a while. Say a short, polite goodbye in the language of the conversation, "
    "for example that they are welcome to call back, then stop."
)
MAX_HANDOVER_ITEMS = 200  # the latest lines; older ones are left out rather than overflow the context


def _text(event: dict[str, Any]) -> str:
    return rt.to_text(event)


class RealtimeEngine:
    name = "realtime"
    ready_on_open = True  # the server queues events sent before session.created
    can_hand_over = True
    owns_turns = False  # the bridge asks for each response it needs (after a tool result, a keypress note)

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot

    # --- server events -------------------------------------------------------------------------------------
    def parse(self, text: str | bytes) -> ev.EngineEvent | None:
        event = rt.parse_server_event(text)
        if type(event) is rt.AudioDelta:  # the hot path downstream
            return ev.AgentAudio(event.delta, event.item_id)
        kind, data = event.type, event.data
        if kind == "input_audio_buffer.speech_started":
            return ev.CallerSpeechStarted()
        if kind == "input_audio_buffer.speech_stopped":
            return ev.CallerSpeechStopped()
        if kind == "response.created":
            return ev.ResponseStarted()
        if kind == "response.done":
            response = data.get("response") or {}
            usage = response.get("usage")
            failure = None
            if response.get("status") == "failed":
                failure = (response.get("status_details") or {}).get("error") or {}
            return ev.ResponseDone(usage if isinstance(usage, dict) else None, failure)
        if kind == "response.function_call_arguments.done":
            return ev.FunctionCall(data.get("call_id", ""), data.get("name", ""), data.get("arguments", ""))
        if kind == "conversation.item.input_audio_transcription.completed":
            return ev.CallerTranscript(data.get("transcript", ""), data.get("item_id"))
        if kind == "response.output_audio_transcript.done":
            return ev.AgentTranscript(data.get("transcript", ""), data.get("item_id"))
        if kind == "input_audio_buffer.timeout_triggered":
            return ev.IdleTimeout()
        if kind == "error":
            error = data.get("error") or {}
            code = error.get("code") or ""
            if code in IGNORED_ERROR_CODES:
                return None
            kind = error.get("type") or ""
            return ev.EngineError(kind, code, error.get("message") or "", fatal=kind in FATAL_ERROR_TYPES)
        return None

    def caller_heard(self, queued_bytes: int, text: str) -> bool:
        return False  # Realtime reports speech itself (CallerSpeechStarted)

    # --- client events -------------------------------------------------------------------------------------
    def opening(self) -> list[str]:
        return [_text(rt.session_update(self.snapshot))]

    def greeting(self, text: str) -> list[str]:
        return [_text(rt.greeting_response(text))]

    def caller_audio(self, payload_b64: str) -> str:
        return rt.append_audio(payload_b64)

    def truncate(self, item_id: str, heard_ms: int) -> list[str]:
        return [_text(rt.truncate(item_id, heard_ms))]

    def cancel_response(self) -> list[str]:
        return [_text(rt.response_cancel())]

    def user_note(self, text: str) -> list[str]:
        return [_text(rt.user_text(text))]

    def tool_result(self, call_id: str, output: str) -> list[str]:
        return [_text(rt.function_call_output(call_id, output))]

    def continue_response(self) -> list[str]:
        return [_text(rt.response_create())]

    def say_goodbye(self, why: str = GOODBYE) -> list[str]:
        return [_text(rt.instructed_response(why))]

    def close(self) -> list[str]:
        return []  # closing the socket ends a Realtime session

    def handover_opening(self, transcript: list[tuple[str, str]]) -> list[str]:
        """A fresh session's first events: the same configuration, then the conversation so far as items."""
        instructions = f"{self.snapshot.get('instructions') or ''}\n\n{HANDOVER_NOTE}".strip()
        events = [_text(rt.session_update({**self.snapshot, "instructions": instructions}))]
        for role, text in transcript[-MAX_HANDOVER_ITEMS:]:
            events.append(_text(rt.user_text(text) if role == "caller" else rt.assistant_text(text)))
        return events
