"""The bridge's call metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout.

On ECS the awslogs driver ships stdout to CloudWatch Logs, which turns each EMF line into metric data
points: no CloudWatch API calls, no credentials, no extra latency on the call path.

- `ActiveCalls` (gauge): exactly one data point per task per minute, in the middle of the minute. The
  service's target tracking uses its *Average* as "calls per task", which only holds with one point per task
  per period: extra points from a task whose calls churn would drag the average towards that task's values.
- `CallsStarted` / `CallsEnded` (counters since the previous line; use Sum): also published soon after a
  change (at most one line per `min_interval_s`), with the live count as a plain property for Logs Insights.
  `gauge_on_change=True` adds `ActiveCalls` data points to those lines too (only for Maximum/Minimum use).
- The call's lifecycle (`CallStats`, recorded at lifecycle points, never per frame: the session's `Measure`
  actions, the consumer, the tool runner; published with the periodic line, so once a minute per task):
  `CallsEnded` by `EndReason`, `OpenAIConnectMs` by `Engine`, `TimeToFirstAgentAudioMs` (stream start to the
  first agent audio sent to Twilio), `ReplyLatencyMs` (end of the caller's turn to the first agent audio of
  the answer; Realtime only, GPT-Live has no end-of-turn event), `BargeIns`, `ToolLatencyMs`, `ToolErrors`,
  `UpstreamErrors`, `FramesDropped` by `Direction` (caller audio lost while the upstream opened, agent audio
  discarded after a barge-in). Timings go out as EMF value arrays (at most 100 values a document), so
  CloudWatch keeps their percentiles.

The names below are the contract with the CDK app's alarms and dashboard (deploy/cdk/voiceops_cdk/
metric_names.py lists the same; a CDK test compares the two).
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
OPENAI_CONNECT_MS = "OpenAIConnectMs"
TIME_TO_FIRST_AGENT_AUDIO_MS = "TimeToFirstAgentAudioMs"
REPLY_LATENCY_MS = "ReplyLatencyMs"
BARGE_INS = "BargeIns"
TOOL_LATENCY_MS = "ToolLatencyMs"
TOOL_ERRORS = "ToolErrors"
UPSTREAM_ERRORS = "UpstreamErrors"
FRAMES_DROPPED = "FramesDropped"
# Dimensions
STAGE = "Stage"
END_REASON = "EndReason"
ENGINE = "Engine"
DIRECTION = "Direction"

MAX_VALUES_PER_DOCUMENT = 100  # the EMF specification's limit for a metric's array of values


def _write_stdout(line: str) -> None:
    # One write per line so other output cannot land in the middle of a JSON document.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class CallStats:
    """Counters and timings of the calls' lifecycle since the last flush, keyed by their extra dimensions.
    Recording is a dictionary update on the event loop; nothing is written until `documents()`. Off (records
    nothing) until a `CallMetrics` publishes it, so a bridge without metrics does not accumulate values."""

    def __init__(self) -> None:
        self.enabled = False
        # (("EndReason", "caller_hangup"),) -> {"CallsEnded": 3}; () -> {"ToolLatencyMs": [120, 95]}
        self._counts: dict[tuple[tuple[str, str], ...], dict[str, int]] = {}
        self._values: dict[tuple[tuple[str, str], ...], dict[str, list[int]]] = {}

    def count(self, name: str, n: int = 1, **dimensions: str) -> None:
        if self.enabled and n:
            counts = self._counts.setdefault(tuple(sorted(dimensions.items())), {})
            counts[name] = counts.get(name, 0) + n

    def timing(self, name: str, ms: float, **dimensions: str) -> None:
        if self.enabled:
            self._values.setdefault(tuple(sorted(dimensions.items())), {}).setdefault(name, []).append(
                max(0, round(ms)))

    def documents(self, namespace: str, stage: str, timestamp_ms: int) -> list[dict[str, Any]]:
        """EMF documents for everything recorded since the last call (then forgotten): one per set of
        dimension values, timings split so no array holds more than MAX_VALUES_PER_DOCUMENT values."""
        counts, self._counts = self._counts, {}
        values, self._values = self._values, {}
        documents = []
        for key in sorted(counts.keys() | values.keys()):
            metrics: dict[str, Any] = dict(counts.get(key, {}))
            timings = values.get(key, {})
            while True:
                for name in sorted(timings):
                    if timings[name]:
                        metrics[name], timings[name] = (timings[name][:MAX_VALUES_PER_DOCUMENT],
                                                        timings[name][MAX_VALUES_PER_DOCUMENT:])
                if not metrics:
                    break
                documents.append(_emf(namespace, stage, timestamp_ms, dict(key), metrics))
                metrics = {}
        return documents


def _emf(namespace: str, stage: str, timestamp_ms: int, dimensions: dict[str, str],
         metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[STAGE, *dimensions]],
                "Metrics": [{"Name": name, "Unit": "Milliseconds" if name.endswith("Ms") else "Count"}
                            for name in metrics],
            }],
        },
        STAGE: stage,
        **dimensions,
        **metrics,
    }


call_stats = CallStats()  # the process's one instance: the consumer records into it, CallMetrics publishes it


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
        stats: CallStats = call_stats,
    ) -> None:
        self.namespace = namespace
        self.stage = stage
        self.instance_id = instance_id
        self.write = write
        self.period_s = period_s
        self.min_interval_s = min_interval_s
        self.emit_on_change = emit_on_change
        self.gauge_on_change = gauge_on_change
        self.stats = stats
        stats.enabled = True
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
            self.emit(gauge=self.gauge_on_change, stats=False)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the periodic line will carry the change
        self._pending = loop.call_later(wait, self._emit_pending)

    def _emit_pending(self) -> None:
        self._pending = None
        self.emit(gauge=self.gauge_on_change, stats=False)

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
                        "Dimensions": [[STAGE]],
                        "Metrics": [{"Name": name, "Unit": "Count"} for name in names],
                    }
                ],
            },
            STAGE: self.stage,
            ACTIVE_CALLS: self.active,
            CALLS_STARTED: self.started,
            CALLS_ENDED: self.ended,
        }
        if self.instance_id:
            document["Instance"] = self.instance_id  # a plain property (not a dimension): searchable in Logs
        return document

    def emit(self, *, gauge: bool = True, stats: bool = True) -> None:
        """The current numbers; with `stats`, also the lifecycle metrics recorded since the last such line."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        try:
            document = self.record(gauge=gauge)
            self.write(json.dumps(document, separators=(",", ":")))
        except Exception:  # metrics must never break the call path
            log.exception("could not write the metrics line")
            return
        self.started = self.ended = 0
        self._last_emit = time.monotonic()
        if stats:
            try:
                for extra in self.stats.documents(self.namespace, self.stage, document["_aws"]["Timestamp"]):
                    self.write(json.dumps(extra, separators=(",", ":")))
            except Exception:
                log.exception("could not write the metrics line")

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
