"""The engine interface: what a call session asks of an OpenAI voice API, and the events it understands.

An engine is a pure codec (no I/O): it builds the client events' text and parses server events into the
session's vocabulary below. `bridge.realtime_engine.RealtimeEngine` implements it for OpenAI Realtime; a GPT-Live
engine implements the same methods. Opening the socket is `bridge.upstream.open_upstream`'s job.

Hot path: `caller_audio` (one string per Twilio frame) and `parse` returning `AgentAudio` (one per model frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bridge.twilio_media import ProtocolError

__all__ = [
    "AgentAudio",
    "AgentTranscript",
    "CallerHeard",
    "CallerSpeechStarted",
    "CallerSpeechStopped",
    "CallerTranscript",
    "Engine",
    "EngineError",
    "EngineEvent",
    "FunctionCall",
    "IdleTimeout",
    "ProtocolError",
    "Ready",
    "ResponseDone",
    "ResponseStarted",
    "Usage",
]


# --- the session's vocabulary ------------------------------------------------------------------------------


@dataclass(slots=True)
class AgentAudio:
    """A chunk of the agent's voice: base64 μ-law for Twilio, and the item it belongs to (for barge-in)."""

    delta: str
    item_id: str


@dataclass(slots=True, frozen=True)
class Ready:
    """The upstream session is configured: caller audio may flow (engines that must wait for it)."""


@dataclass(slots=True, frozen=True)
class CallerSpeechStarted:
    """The caller started talking (the engine's turn detection)."""


@dataclass(slots=True, frozen=True)
class CallerSpeechStopped:
    pass


@dataclass(slots=True, frozen=True)
class CallerHeard:
    """Caller speech, from an engine that owns turn-taking (a transcript fragment): the session asks the
    engine's `caller_heard` whether it should empty Twilio's playback buffer."""

    text: str


@dataclass(slots=True, frozen=True)
class ResponseStarted:
    pass


@dataclass(slots=True, frozen=True)
class ResponseDone:
    """A response ended; `usage` is that response's (summed by the session); `failure` says why it failed."""

    usage: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class Usage:
    """Usage to record: `cumulative` figures replace the keys they name (e.g. billed seconds so far); others
    are added to the call's totals (e.g. one backend response's tokens)."""

    usage: dict[str, Any]
    cumulative: bool = True


@dataclass(slots=True, frozen=True)
class FunctionCall:
    call_id: str
    name: str
    arguments: str


@dataclass(slots=True, frozen=True)
class CallerTranscript:
    text: str
    item_id: str | None = None


@dataclass(slots=True, frozen=True)
class AgentTranscript:
    text: str
    item_id: str | None = None


@dataclass(slots=True, frozen=True)
class IdleTimeout:
    """The caller said nothing for the configured idle time."""


@dataclass(slots=True, frozen=True)
class EngineError:
    """An error event. `fatal` ones end the call."""

    type: str
    code: str
    message: str
    fatal: bool = False


EngineEvent = (
    AgentAudio | Ready | CallerSpeechStarted | CallerSpeechStopped | CallerHeard | ResponseStarted | ResponseDone
    | Usage | FunctionCall | CallerTranscript | AgentTranscript | IdleTimeout | EngineError
)


# --- the interface -----------------------------------------------------------------------------------------


class Engine(Protocol):
    """One upstream session's codec. Every method returns ready-to-send text (a list: zero or more events)."""

    name: str
    ready_on_open: bool  # True: audio may flow once `opening()` is sent; False: wait for `Ready`
    can_hand_over: bool  # True: a long call moves to a fresh session with `handover_opening`
    owns_turns: bool  # True: the model answers by itself (GPT-Live); False: the bridge asks for responses

    def parse(self, text: str | bytes) -> EngineEvent | list[EngineEvent] | None:
        """One server event in the session's vocabulary (a list when it means several things); None for events
        the session ignores. Raises `ProtocolError` for something that is not a server event."""
        ...

    def caller_heard(self, queued_bytes: int, text: str) -> bool:
        """Whether caller speech (`CallerHeard`) should empty Twilio's buffer, holding `queued_bytes` of audio."""
        ...

    def opening(self) -> list[str]: ...
    def greeting(self, text: str) -> list[str]: ...
    def caller_audio(self, payload_b64: str) -> str: ...
    def truncate(self, item_id: str, heard_ms: int) -> list[str]: ...
    def cancel_response(self) -> list[str]: ...
    def user_note(self, text: str) -> list[str]: ...
    def tool_result(self, call_id: str, output: str) -> list[str]: ...
    def continue_response(self) -> list[str]: ...
    def say_goodbye(self, why: str) -> list[str]: ...
    def close(self) -> list[str]: ...
    def handover_opening(self, transcript: list[tuple[str, str]]) -> list[str]: ...
