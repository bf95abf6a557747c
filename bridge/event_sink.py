"""Call events leave the audio path through here: queued in memory, written to the database in batches and
published to the channel layer for the dashboard, by one background task per process.

A slow or down database delays the writes (they are retried, in order); it never blocks a call. The buffer is
bounded, so an outage that outlasts it costs the oldest transcript lines (counted and logged), not memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction

from calls import services
from calls.live_feed import ALL_CALLS_GROUP, call_group

log = logging.getLogger(__name__)


def _write_batch(batch: list[tuple[int, dict[str, Any]]]) -> None:
    close_old_connections()  # a connection broken by an outage is replaced, not reused
    by_call: dict[int, list[dict[str, Any]]] = {}
    for call_id, event in batch:
        by_call.setdefault(call_id, []).append(event)
    for call_id, events in by_call.items():
        try:
            with transaction.atomic():
                services.add_events(call_id, events)
        except IntegrityError:
            # Not transient (the call row is gone, e.g. purged): retrying would block every other call's events.
            log.error("dropped %d event(s) of call %s: the call no longer exists", len(events), call_id)


class EventSink:
    def __init__(self, max_buffer: int = 20_000, batch_size: int = 200, flush_interval_s: float = 0.5) -> None:
        self._pending: deque[tuple[int, dict[str, Any]]] = deque()
        self._live: deque[dict[str, Any]] = deque(maxlen=5_000)
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.dropped = 0
        self.written = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retry_s = 0.0

    @property
    def pending(self) -> int:
        """Events and live updates not yet written or published."""
        return len(self._pending) + len(self._live)

    # --- producers (the calls); never await, never raise ---------------------------------------------
    def add(self, call_id: int, event: dict[str, Any], live: dict[str, Any] | None = None) -> None:
        if len(self._pending) >= self.max_buffer:
            self._pending.popleft()
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 1000 == 0:
                log.error("event buffer full: %d event(s) dropped so far", self.dropped)
        self._pending.append((call_id, event))
        if live is not None:
            self._live.append(live)
        self._ensure_running()
        self._wake.set()

    def publish(self, live: dict[str, Any]) -> None:
        """A dashboard update that is not stored as an event (call started/ended)."""
        self._live.append(live)
        self._ensure_running()
        self._wake.set()

    # --- the writer ------------------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake = asyncio.Event()  # an Event binds to the loop that first waits on it
            # A fresh context: the writer outlives the call that started it, and must not run inside its trace.
            self._task = loop.create_task(self._run(), name="event-sink", context=contextvars.Context())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.flush_interval_s)  # let a few events gather into one batch
            await self._publish_live()
            await self._flush_db()
            if self._pending:
                self._wake.set()

    async def _flush_db(self) -> None:
        while self._pending:
            batch = [self._pending[i] for i in range(min(self.batch_size, len(self._pending)))]
            try:
                await sync_to_async(_write_batch, thread_sensitive=False)(batch)
            except DatabaseError as exc:
                self._retry_s = min(max(self._retry_s * 2, 0.5), 10.0)
                log.warning("event write failed (%s); %d pending, retrying in %.1fs",
                            type(exc).__name__, len(self._pending), self._retry_s)
                await asyncio.sleep(self._retry_s)
                return
            for _ in batch:
                self._pending.popleft()
            self.written += len(batch)
            self._retry_s = 0.0

    async def _publish_live(self) -> None:
        layer = get_channel_layer()
        while self._live:
            message = self._live.popleft()
            if layer is None:
                continue
            try:
                await layer.group_send(ALL_CALLS_GROUP, message)
                await layer.group_send(call_group(message["call_id"]), message)
            except Exception as exc:  # Redis down: the dashboard misses live updates, calls go on
                log.warning("live update not published: %s", type(exc).__name__)
                self._live.clear()
                return

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Write what is pending now (tests, drain). True when everything was written."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._pending or self._live:
                    await self._publish_live()
                    await self._flush_db()
                    if self._pending:
                        await asyncio.sleep(0.05)
        except TimeoutError:
            return False
        return True


sink = EventSink()
