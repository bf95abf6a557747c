"""Process-wide bridge state: the live calls, readiness and the SIGTERM drain.

One asyncio event loop serves every call in the process, so plain attributes need no locks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from bridge.event_sink import sink

log = logging.getLogger(__name__)
EVENT_FLUSH_S = 5.0  # after the calls, what they left in the event sink is written; bounded like the rest


class LiveCall(Protocol):
    async def end_politely(self, reason: str) -> None: ...


class BridgeState:
    def __init__(self) -> None:
        self.draining = False
        self.calls: set[LiveCall] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.on_change: list[Callable[[int], None]] = []  # e.g. ECS task protection, metrics

    @property
    def active_calls(self) -> int:
        return len(self.calls)

    def add(self, call: LiveCall) -> None:
        self.calls.add(call)
        self._idle.clear()
        self._changed()

    def discard(self, call: LiveCall) -> None:
        if call in self.calls:
            self.calls.discard(call)
            if not self.calls:
                self._idle.set()
            self._changed()

    def _changed(self) -> None:
        for callback in self.on_change:
            try:
                callback(len(self.calls))
            except Exception:
                log.exception("bridge state listener failed")

    async def drain(self, timeout_s: float) -> int:
        """Stop taking calls, let live ones finish for up to `timeout_s`, then end the rest politely; then write
        the events they left queued (their last lines, their end) before the process exits.
        Returns how many calls had to be ended."""
        self.draining = True
        ended = await self._finish_calls(timeout_s)
        if not await sink.flush(EVENT_FLUSH_S):
            log.error("drain: %d event(s) still unwritten at exit", sink.pending)
        return ended

    async def _finish_calls(self, timeout_s: float) -> int:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return 0
        except TimeoutError:
            pass
        left = list(self.calls)
        log.warning("drain timeout: ending %d call(s) politely", len(left))
        # Bounded, so that the whole stop stays inside the container's stopTimeout.
        try:
            async with asyncio.timeout(5):
                await asyncio.gather(*(c.end_politely("drained") for c in left), return_exceptions=True)
                await self._idle.wait()
        except TimeoutError:
            log.error("%d call(s) did not end after the drain", len(self.calls))
        return len(left)


state = BridgeState()
