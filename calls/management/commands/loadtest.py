"""N simulated Twilio calls against a running bridge; prints latency percentiles and, given the bridge's pid,
the CPU it spent per call (the figure behind "calls per core").

    manage.py loadtest --url http://127.0.0.1:8000 --calls 100 --hold 20 --bridge-pid 1234

Each call: a signed webhook, a media stream that sends 20 ms μ-law frames in real time for `--hold` seconds
(speech bursts and silence, like a live line), answers marks as Twilio's playback would, then hangs up.
Point it only at loopback or your own test deployment; it is bounded by --calls and --hold.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from calls.management.commands import _simulators

try:
    from calls.simulators import audio
    from calls.simulators.twilio_caller import MediaStreamCall, inbound_call_params, parse_twiml, signed_webhook_post
except ImportError:  # a production image: handle() says so
    audio = None  # type: ignore[assignment]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return f"p50 {at(0.5):.0f} ms  p95 {at(0.95):.0f} ms  p99 {at(0.99):.0f} ms  max {ordered[-1]:.0f} ms"


class Command(BaseCommand):
    help = "Place N concurrent simulated calls against a bridge and print latency percentiles."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default=settings.PUBLIC_WEBHOOK_BASE_URL, help="Webhook base URL.")
        parser.add_argument("--to", default="+15005550006")
        parser.add_argument("--calls", type=int, default=20, help="Concurrent calls (1-1000).")
        parser.add_argument("--hold", type=float, default=15.0, help="Seconds each call lasts (1-600).")
        parser.add_argument("--ramp", type=float, default=5.0, help="Seconds over which calls start.")
        parser.add_argument("--auth-token", default=settings.TWILIO_AUTH_TOKEN)
        parser.add_argument("--bridge-pid", type=int, help="Measure this process's CPU during the steady state.")

    def handle(self, *args: Any, **opts: Any) -> None:
        _simulators.require(audio)
        if not 1 <= opts["calls"] <= 1000 or not 1 <= opts["hold"] <= 600:
            raise CommandError("--calls must be 1-1000 and --hold 1-600 seconds")
        report = asyncio.run(run_load(opts["url"].rstrip("/"), opts["to"], opts["calls"], opts["hold"],
                                      opts["ramp"], opts["auth_token"] or None, opts["bridge_pid"]))
        for line in report:
            self.stdout.write(line)


async def _one_call(base: str, to: str, hold_s: float, token: str | None, stats: dict[str, Any]) -> None:
    params = inbound_call_params(to=to, from_="+15005550001")
    started = time.perf_counter()
    status, body = await asyncio.to_thread(signed_webhook_post, base, "/twilio/voice", params, token)
    stats["webhook_ms"].append((time.perf_counter() - started) * 1000)
    twiml = parse_twiml(body) if status == 200 else None
    if twiml is None or twiml.kind != "stream" or not twiml.stream_url:
        stats["failed"].append(f"webhook HTTP {status}")
        return
    call = MediaStreamCall(twiml.stream_url, parameters=twiml.parameters, auth_token=token,
                           account_sid=params["AccountSid"], call_sid=params["CallSid"], record_messages=False)
    try:
        async with call:
            deadline = time.monotonic() + hold_s
            while time.monotonic() < deadline and not call.closed.is_set():
                await call.say(audio.speech_like(800) + audio.silence(1200))
    except Exception as exc:  # one failed call is a data point, not the end of the test
        stats["failed"].append(type(exc).__name__)
        return
    result = call.result
    stats["reply_ms"].extend(result.reply_latencies_ms)
    stats["rtt_ms"].extend(result.ws_rtt_ms)
    stats["frames_sent"] += result.media_frames_sent
    stats["frames_received"] += result.media_frames_received
    if result.closed_by_server and result.close_code not in (None, 1000):
        stats["failed"].append(f"closed {result.close_code} {result.close_reason or ''}".strip())
    else:
        stats["completed"] += 1


async def run_load(base: str, to: str, calls: int, hold_s: float, ramp_s: float, token: str | None,
                   bridge_pid: int | None) -> list[str]:
    stats: dict[str, Any] = {"webhook_ms": [], "reply_ms": [], "rtt_ms": [], "failed": [], "completed": 0,
                             "frames_sent": 0, "frames_received": 0}
    tasks = []
    began = time.monotonic()
    for _ in range(calls):
        tasks.append(asyncio.create_task(_one_call(base, to, hold_s, token, stats)))
        await asyncio.sleep(ramp_s / calls)
    cpu_line = "bridge CPU: not measured (give --bridge-pid)"
    if bridge_pid:
        # Steady state: every call is up; measure the middle of the hold time.
        window = max(1.0, (hold_s - ramp_s) * 0.8)
        cpu0, t0 = process_cpu_seconds(bridge_pid), time.monotonic()
        await asyncio.sleep(window)
        cpu1, t1 = process_cpu_seconds(bridge_pid), time.monotonic()
        core_share = (cpu1 - cpu0) / (t1 - t0)
        per_call = core_share / calls
        capacity = 1 / per_call if per_call > 0 else float("inf")
        cpu_line = (f"bridge CPU: {core_share * 100:.1f}% of one core for {calls} calls "
                    f"= {per_call * 1000:.2f} ms CPU per call-second → ~{capacity:.0f} calls per core "
                    f"({capacity / 400:.2f}x the 400 target)")
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - began
    expected = calls * hold_s * 50
    return [
        f"calls: {calls} started, {stats['completed']} completed, {len(stats['failed'])} failed in {elapsed:.1f}s",
        f"caller frames sent: {stats['frames_sent']} ({stats['frames_sent'] / expected:.0%} of {expected:.0f} "
        f"expected at 50/s), agent frames received: {stats['frames_received']}",
        f"webhook latency: {percentiles(stats['webhook_ms'])}",
        f"reply latency (end of caller speech → first agent audio): {percentiles(stats['reply_ms'])}",
        f"websocket ping round trip: {percentiles(stats['rtt_ms'])}",
        cpu_line,
        *(f"  failure: {reason}" for reason in sorted(set(stats["failed"]))[:10]),
    ]
