"""The GPT-Live engine: `bridge.live_events` (the wire codec) spoken in the session's vocabulary. Pure: no I/O.

What differs from Realtime, and how the session's vocabulary carries it:
- configuration is one `session.start`; caller audio and the greeting wait for `session.started` (`Ready`);
- the model owns turn-taking and barge-in: no response events, nothing to cancel or truncate. A caller
  transcript fragment is the only sign of caller speech; `caller_heard` says whether it should empty Twilio's
  playback buffer (`live_events.should_clear_playback`). Live audio has no item ids: each stretch of output
  between two such clears gets its own id, so the playback tracker measures what is still queued;
- transcripts come as timed fragments, grouped into caller/agent lines by `live_events.TranscriptLines`;
- tools run through `responses` delegation: results go back with `response.item.create` + `response.create`;
- usage is billed seconds (cumulative snapshots) plus the delegated backend's tokens (summed);
- hang-up sends `session.close`; the server answers `session.closed` with the final usage, then closes.
"""

from __future__ import annotations

from typing import Any

from bridge import engine as ev
from bridge import live_events as lv


class LiveEngine:
    name = "live"
    ready_on_open = False  # audio and commands wait for session.started
    can_hand_over = False  # no known session limit to work around; an expired session ends the call
    owns_turns = True  # the model answers by itself: a note to it needs no request for a response

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot
        self._lines = lv.TranscriptLines()
        self._segment = 0  # numbers the stretches of output between two clears (Live audio has no item ids)
        self._stream_id = f"{lv.OUTPUT_STREAM_ID}-0"

    # --- server events -------------------------------------------------------------------------------------
    def parse(self, text: str | bytes) -> ev.EngineEvent | list[ev.EngineEvent] | None:
        event = lv.parse_server_event(text)
        kind = type(event)
        if kind is lv.AudioDelta:  # the hot path downstream
            return ev.AgentAudio(event.delta, self._stream_id)  # type: ignore[attr-defined]
        if kind is lv.TranscriptDelta:
            events: list[ev.EngineEvent] = [_line(line) for line in self._lines.add(event)]  # type: ignore[arg-type]
            if event.role == "caller":  # type: ignore[attr-defined]
                events.append(ev.CallerHeard(event.text))  # type: ignore[attr-defined]
            return events
        if kind is lv.SessionStarted:
            return ev.Ready()
        if kind is lv.FunctionCall:
            return ev.FunctionCall(event.call_id, event.name, event.arguments)  # type: ignore[attr-defined]
        if kind is lv.BackendDone:  # the delegated backend's tokens, billed apart: summed over its responses
            return ev.Usage({"backend": event.usage}, cumulative=False) if event.usage else None  # type: ignore[attr-defined]
        if kind is lv.Usage:
            return ev.Usage({"seconds": event.seconds})  # type: ignore[attr-defined]
        if kind is lv.SessionClosed:
            return [*(_line(line) for line in self._lines.flush()), ev.Usage({"seconds": event.seconds})]  # type: ignore[attr-defined]
        if kind is lv.LiveError:
            return ev.EngineError(event.error_type, event.code, event.message, fatal=event.fatal)  # type: ignore[attr-defined]
        return None

    def caller_heard(self, queued_bytes: int, text: str) -> bool:
        return lv.should_clear_playback(queued_bytes, text)

    # --- client events -------------------------------------------------------------------------------------
    def opening(self) -> list[str]:
        return [lv.to_text(lv.session_start(self.snapshot))]

    def greeting(self, text: str) -> list[str]:
        return [lv.to_text(lv.greeting(text))]

    def caller_audio(self, payload_b64: str) -> str:
        return lv.append_audio(payload_b64)

    def truncate(self, item_id: str, heard_ms: int) -> list[str]:
        """Nothing to truncate (the model stopped by itself); later output is a new stretch."""
        self._segment += 1
        self._stream_id = f"{lv.OUTPUT_STREAM_ID}-{self._segment}"
        return []

    def cancel_response(self) -> list[str]:
        return []

    def user_note(self, text: str) -> list[str]:
        return [lv.to_text(lv.caller_note(text))]

    def tool_result(self, call_id: str, output: str) -> list[str]:
        return [lv.to_text(lv.function_call_output(call_id, output))]

    def continue_response(self) -> list[str]:
        return [lv.to_text(lv.response_create())]

    def say_goodbye(self, why: str = "") -> list[str]:
        return []  # only Realtime's idle timeout asks for it

    def close(self) -> list[str]:
        return [lv.to_text(lv.session_close())]

    def handover_opening(self, transcript: list[tuple[str, str]]) -> list[str]:
        raise NotImplementedError("GPT-Live sessions are not handed over")


def _line(line: lv.TranscriptLine) -> ev.CallerTranscript | ev.AgentTranscript:
    return ev.CallerTranscript(line.text) if line.role == "caller" else ev.AgentTranscript(line.text)
