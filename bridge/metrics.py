"""The bridge's call metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout.

On ECS the awslogs driver ships stdout to CloudWatch Logs, which turns each EMF line into metric data
points: no CloudWatch API calls, no credentials, no extra latency on the call path. One line per minute
carries the `ActiveCalls` gauge the service's target tracking scales on; a change in the number of live
calls publishes sooner (at most one line per `min_interval_s`) so scale-out reacts within seconds.
`CallsStarted` / `CallsEnded` count what happened since the previous line (sum them in CloudWatch).
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
    ) -> None:
        self.namespace = namespace
        self.stage = stage
        self.instance_id = instance_id
        self.write = write
        self.period_s = period_s
        self.min_interval_s = min_interval_s
        self.emit_on_change = emit_on_change
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
            self.emit()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the periodic line will carry the change
        self._pending = loop.call_later(wait, self._emit_pending)

    def _emit_pending(self) -> None:
        self._pending = None
        self.emit()

    # --- output ---------------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """The EMF document for the current numbers (see the CloudWatch EMF specification)."""
        document: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [["Stage"]],
                        "Metrics": [
                            {"Name": ACTIVE_CALLS, "Unit": "Count"},
                            {"Name": CALLS_STARTED, "Unit": "Count"},
                            {"Name": CALLS_ENDED, "Unit": "Count"},
                        ],
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

    def emit(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        try:
            self.write(json.dumps(self.record(), separators=(",", ":")))
        except Exception:  # metrics must never break the call path
            log.exception("could not write the metrics line")
            return
        self.started = self.ended = 0
        self._last_emit = time.monotonic()

    # --- the periodic line ----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            self.emit()
            await asyncio.sleep(self.period_s)

    def start(self) -> asyncio.Task[None]:
        """Start the periodic line on the running loop (the first line goes out at once)."""
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
