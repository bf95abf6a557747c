"""One call's configuration, typed, from the config snapshot frozen when the call came in. Pure: no I/O.

Every default for a snapshot that lacks a key (an older call, a hand-made row) lives here, not in the code that
reads the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENGINES = ("realtime", "live")
DEFAULT_MAX_CALL_SECONDS = 3300
BUILTIN_ENDINGS = {"end_call": "agent_ended", "transfer_call": "transferred"}  # tool name → Call.EndReason


@dataclass(frozen=True, slots=True)
class CallConfig:
    snapshot: dict[str, Any]  # as frozen; the engine codecs build their session from it
    config_id: int | None
    name: str
    engine: str
    model: str
    greeting: str
    interrupt_response: bool
    idle_timeout_ms: int | None
    max_call_seconds: int
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)  # by name

    @property
    def is_configured(self) -> bool:
        return bool(self.snapshot)

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any] | None, default_model: str) -> CallConfig:
        snapshot = snapshot or {}
        turn = snapshot.get("turn_detection") or {}
        engine = snapshot.get("engine") if snapshot.get("engine") in ENGINES else "realtime"
        return cls(
            snapshot=snapshot,
            config_id=snapshot.get("config_id"),
            name=snapshot.get("name") or "",
            engine=engine,
            model=snapshot.get("model") or default_model,
            greeting=snapshot.get("greeting") or "",
            interrupt_response=turn.get("interrupt_response", True) is not False,
            idle_timeout_ms=turn.get("idle_timeout_ms") if turn.get("type") == "server_vad" else None,
            max_call_seconds=int(snapshot.get("max_call_seconds") or DEFAULT_MAX_CALL_SECONDS),
            tools={t["name"]: t for t in snapshot.get("tools") or () if t.get("name")},
        )

    def builtin_end_reason(self, tool_name: str) -> str | None:
        """The end reason when `tool_name` is an enabled built-in that ends the call (end_call, transfer_call)."""
        spec = self.tools.get(tool_name)
        if spec is None or spec.get("kind") != "builtin":
            return None
        return BUILTIN_ENDINGS.get(tool_name)

    def http_tool(self, tool_name: str) -> dict[str, Any] | None:
        spec = self.tools.get(tool_name)
        return spec if spec is not None and spec.get("kind") == "http" else None
