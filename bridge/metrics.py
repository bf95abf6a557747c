"""The bridge's call metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout.

On ECS the awslogs driver ships stdout to CloudWatch Logs, which turns each EMF line into metric data
points: no CloudWatch API calls, no credentials, no extra latency on the call path.

- `ActiveCalls` (gauge): exactly one data point per task per minute, in the middle of the minute. The
  service's target tracking uses its *Average* as "calls per task", which only holds with one point per task
  per period: extra points from a task whose calls churn would drag the average towards that task's values.
- `CallsStarted` / `CallsEnded` (counters since the previous line; use Sum): also published soon after a
  change (at most one line per `min_interval_s`), with the live count as a plain property for Logs Insights.
  `gauge_on_change=True` adds `ActiveCalls` data points to those lines too (only for Maximum/Minimum use).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

ACTIVE_CALLS = "ActiveCalls"
CALLS_STARTED = "CallsStarted"
CALLS_ENDED = "CallsEnded"


def _write_stdout(line: str) -> None:
    # One write per line so other output cannot land in the middle of a JSON document.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class CallMetrics:
    """A `BridgeState.on_change` listener that publishes the live-call gauge and start/end counters."""

    def __init__(
        self,
        namespace: str,
        stage: str,
        *,
        instance_id: str = "",
        write: Callable[[str], None] = _write_stdout,
        period_s: float = 60.0,
        min_interval_s: float = 1.0,
        emit_on_change: bool = True,
        gauge_on_change: bool = False,
    ) -> None:
        self.namespace = namespace
        self.stage = stage
        self.instance_id = instance_id
        self.write = write
        self.period_s = period_s
        self.min_interval_s = min_interval_s
        self.emit_on_change = emit_on_change
        self.gauge_on_change = gauge_on_change
        self.active = 0
        self.started = 0  # since the last line
        self.ended = 0
        self._last_emit = -math.inf
        self._pending: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    # --- the listener: called synchronously on the event loop whenever a call starts or ends ----------
    def on_change(self, active_calls: int) -> None:
        delta = active_calls - self.active
        if delta > 0:
            self.started += delta
        else:
            self.ended -= delta
        self.active = active_calls
        if self.emit_on_change:
            self._emit_soon()

    def _emit_soon(self) -> None:
        if self._pending is not None:
            return  # a rate-limited line is already scheduled; it will carry the latest numbers
        wait = self._last_emit + self.min_interval_s - time.monotonic()
        if wait <= 0:
            self.emit(gauge=self.gauge_on_change)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the periodic line will carry the change
        self._pending = loop.call_later(wait, self._emit_pending)

    def _emit_pending(self) -> None:
        self._pending = None
        self.emit(gauge=self.gauge_on_change)

    # --- output ---------------------------------------------------------------------------------------
    def record(self, *, gauge: bool = True) -> dict[str, Any]:
        """The EMF document for the current numbers (see the CloudWatch EMF specification). Without `gauge`,
        `ActiveCalls` is only a property of the log event, not a metric data point."""
        names = [ACTIVE_CALLS, CALLS_STARTED, CALLS_ENDED] if gauge else [CALLS_STARTED, CALLS_ENDED]
        document: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [["Stage"]],
                        "Metrics": [{"Name": name, "Unit": "Count"} for name in names],
                    }
                ],
            },
            "Stage": self.stage,
            ACTIVE_CALLS: self.active,
            CALLS_STARTED: self.started,
            CALLS_ENDED: self.ended,
        }
        if self.instance_id:
            document["Instance"] = self.instance_id  # a plain property (not a dimension): searchable in Logs
        return document

    def emit(self, *, gauge: bool = True) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        try:
            self.write(json.dumps(self.record(gauge=gauge), separators=(",", ":")))
        except Exception:  # metrics must never break the call path
            log.exception("could not write the metrics line")
            return
        self.started = self.ended = 0
        self._last_emit = time.monotonic()

    # --- the periodic line ----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            self.emit()
            await asyncio.sleep(self._until_next_slot())

    def _until_next_slot(self) -> float:
        """Seconds to the middle of the next period on the wall clock: one gauge point per CloudWatch
        period, without drift, and far from the period's edges where jitter could double or skip one."""
        now = time.time()
        slot = (now // self.period_s) * self.period_s + self.period_s / 2
        while slot <= now + 0.001:
            slot += self.period_s
        return slot - now

    def start(self) -> asyncio.Task[None]:
        """Start the periodic line on the running loop (the first one goes out at once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="bridge-metrics")
        return self._task

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
