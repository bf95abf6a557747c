"""N simulated Twilio calls against a running bridge; prints latency percentiles and, given the bridge's pid,
the CPU it spent per call (the figure behind "calls per core").

    manage.py loadtest --url http://127.0.0.1:8000 --calls 100 --hold 20 --bridge-pid 1234
    manage.py loadtest --url http://127.0.0.1:8000 --calls 100 --hold 20 --bridge-pid 1234 --echo-upstream 8765

Each call: a signed webhook, a media stream that sends 20 ms μ-law frames in real time for `--hold` seconds
(speech bursts and silence, like a live line), answers marks as Twilio's playback would, then hangs up.
With --echo-upstream PORT the upstream is an echo server in this process (the bridge must use
ws://127.0.0.1:PORT/v1/realtime as OPENAI_REALTIME_URL) and the frames are numbered and timed, so the report has
the latency each direction adds, frames lost and reordered, and call set-up time (`calls.simulators.echo_load`).
Point it only at loopback or your own test deployment; it is bounded by --calls and --hold.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from calls.management.commands import _simulators
from calls.services import TEST_CALL_PARAM

try:
    from calls.simulators import audio
    from calls.simulators.echo_load import EchoLoadStats, run_echo_load
    from calls.simulators.twilio_caller import MediaStreamCall, inbound_call_params, parse_twiml, signed_webhook_post
except ImportError:  # a production image: handle() says so
    audio = None  # type: ignore[assignment]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")  # Linux only: another process's CPU time has no portable source in the standard library

EXPLANATION = [
    "What these figures mean:",
    "  webhook latency: Twilio's POST /twilio/voice until the TwiML came back (the caller hears ringing).",
    "  reply latency: the end of the caller's speech until the first agent audio arrived back (what the caller",
    "    perceives as the agent's reaction time; it includes OpenAI's own response time).",
    "  websocket ping round trip: a WebSocket ping to the bridge and back, under this load.",
    "  caller frames sent: 20 ms audio frames delivered on time; well under 100% means this machine (not the",
    "    bridge) could not keep up, so the other figures understate what the bridge can do.",
    "  bridge CPU: CPU seconds the bridge process used per second of wall time in the steady state, divided",
    "    by the calls: calls per core = 1 / (CPU per call-second). Run the bridge with the simulator on",
    "    loopback, not the real OpenAI, to measure the bridge alone.",
]


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc)."""
    with open(PROC / str(pid) / "stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def bridge_cpu_reader(pid: int | None) -> tuple[Callable[[], float] | None, str]:
    """A reader of the bridge's CPU seconds, or None with the reason it cannot be measured. A pid that names
    no process is a mistake the user must hear about before any call is placed."""
    if pid is None:
        return None, "bridge CPU: not measured (give --bridge-pid)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise CommandError(f"--bridge-pid {pid}: no such process (is the bridge running? `pgrep -f runbridge`)") \
            from None
    except PermissionError:
        pass  # it exists, owned by someone else; /proc may still be readable
    try:
        process_cpu_seconds(pid)
    except FileNotFoundError:
        return None, f"bridge CPU: not measured: this host has no {PROC}/<pid>/stat (Linux only)"
    except (OSError, ValueError, IndexError) as exc:
        return None, f"bridge CPU: not measured: cannot read process {pid}'s CPU time ({exc})"
    return (lambda: process_cpu_seconds(pid)), ""


def process_rss_kb(pid: int) -> int:
    """Resident set size of a process in KB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


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
        parser.add_argument("--url", default=settings.PUBLIC_WEBHOOK_BASE_URL,
                            help="Webhook base URL (default PUBLIC_WEBHOOK_BASE_URL).")
        parser.add_argument("--to", default="+15005550006", help="The dialled number (E.164) every call uses.")
        parser.add_argument("--calls", type=int, default=20, help="Concurrent calls (1-1000).")
        parser.add_argument("--hold", type=float, default=15.0, help="Seconds each call lasts (1-600).")
        parser.add_argument("--ramp", type=float, default=5.0, help="Seconds over which calls start.")
        parser.add_argument("--auth-token", default=settings.TWILIO_AUTH_TOKEN,
                            help="Twilio auth token used to sign (default TWILIO_AUTH_TOKEN; empty = unsigned).")
        parser.add_argument("--bridge-pid", type=int,
                            help="Measure this process's CPU during the steady state (Linux hosts).")
        parser.add_argument("--echo-upstream", type=int, metavar="PORT",
                            help="Serve the bridge's upstream here as an echo and time each direction.")

    def handle(self, *args: Any, **opts: Any) -> None:
        _simulators.require(audio)
        if not 1 <= opts["calls"] <= 1000 or not 1 <= opts["hold"] <= 600:
            raise CommandError("--calls must be 1-1000 and --hold 1-600 seconds")
        cpu_reader, cpu_note = bridge_cpu_reader(opts["bridge_pid"])  # before any call: a wrong pid stops here
        if opts["echo_upstream"]:
            report = asyncio.run(run_echo(opts["url"].rstrip("/"), opts["to"], opts["calls"], opts["hold"],
                                          opts["ramp"], opts["auth_token"] or None,
                                          opts["bridge_pid"] if cpu_reader else None, opts["echo_upstream"]))
        else:
            report = asyncio.run(run_load(opts["url"].rstrip("/"), opts["to"], opts["calls"], opts["hold"],
                                          opts["ramp"], opts["auth_token"] or None, cpu_reader, cpu_note))
        for line in [*report, *EXPLANATION]:
            self.stdout.write(line)


async def _one_call(base: str, to: str, hold_s: float, token: str | None, stats: dict[str, Any]) -> None:
    params = inbound_call_params(to=to, from_="+15005550001", extra={TEST_CALL_PARAM: "1"})
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


async def _core_share(cpu_seconds: Callable[[], float], window_s: float) -> float | None:
    """CPU seconds per wall second over `window_s`; None when the process went away meanwhile."""
    try:
        cpu0, t0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(window_s)
        return (cpu_seconds() - cpu0) / (time.monotonic() - t0)
    except OSError:
        return None


async def run_load(base: str, to: str, calls: int, hold_s: float, ramp_s: float, token: str | None,
                   cpu_seconds: Callable[[], float] | None, cpu_note: str = "") -> list[str]:
    stats: dict[str, Any] = {"webhook_ms": [], "reply_ms": [], "rtt_ms": [], "failed": [], "completed": 0,
                             "frames_sent": 0, "frames_received": 0}
    tasks = []
    began = time.monotonic()
    for _ in range(calls):
        tasks.append(asyncio.create_task(_one_call(base, to, hold_s, token, stats)))
        await asyncio.sleep(ramp_s / calls)
    cpu_line = cpu_note
    if cpu_seconds is not None:
        # Steady state: every call is up; measure the middle of the hold time.
        core_share = await _core_share(cpu_seconds, max(1.0, (hold_s - ramp_s) * 0.8))
        if core_share is None:
            cpu_line = "bridge CPU: not measured: the bridge process ended during the test"
        else:
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


async def _bridge_usage(pid: int, calls: int, window_s: float, idle_rss_kb: int, usage: dict[str, float]) -> None:
    """The bridge's CPU over `window_s` of the steady state and its RSS above `idle_rss_kb`, per call."""
    cpu0, t0 = process_cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(window_s)
    cpu1, t1 = process_cpu_seconds(pid), time.monotonic()
    usage["core_share"] = (cpu1 - cpu0) / (t1 - t0)
    usage["cpu_s_per_call_minute"] = usage["core_share"] * 60 / calls
    usage["rss_kb"] = process_rss_kb(pid)
    usage["rss_kb_per_call"] = (usage["rss_kb"] - idle_rss_kb) / calls


async def run_echo(base: str, to: str, calls: int, hold_s: float, ramp_s: float, token: str | None,
                   bridge_pid: int | None, upstream_port: int) -> list[str]:
    usage: dict[str, float] = {}
    steady = None
    if bridge_pid:  # RSS per call: the steady state against the process before this load
        steady = _bridge_usage(bridge_pid, calls, max(1.0, hold_s * 0.8), process_rss_kb(bridge_pid), usage)
    began = time.monotonic()
    stats = await run_echo_load(base, to, calls, hold_s, ramp_s, token, upstream_port, steady)
    return echo_report(stats, calls, time.monotonic() - began, usage)


def echo_report(stats: EchoLoadStats, calls: int, elapsed_s: float, usage: dict[str, float]) -> list[str]:
    counted = stats.counted()
    lines = [
        f"calls: {calls} started, {stats.completed} completed, {len(stats.errors)} failed in {elapsed_s:.1f}s",
        f"call set-up (webhook → first frame back): {percentiles(stats.setup_ms)}",
        f"caller → upstream added latency: {percentiles(stats.uplink.latencies_ms)}",
        f"upstream → caller added latency: {percentiles(stats.downlink.latencies_ms)}",
        f"frames: {stats.frames_sent} sent, {counted} after set-up; lost caller → upstream "
        f"{stats.lost(stats.uplink)}, upstream → caller {stats.lost(stats.downlink)}; reordered "
        f"{stats.uplink.reordered} and {stats.downlink.reordered}",
    ]
    if usage:
        per_minute = usage["cpu_s_per_call_minute"]
        lines.append(
            f"bridge: {usage['core_share'] * 100:.1f}% of one core = {per_minute:.2f} CPU s per call-minute "
            f"(~{60 / max(per_minute, 1e-9):.0f} calls per core); RSS {usage['rss_kb'] / 1024:.0f} MiB, "
            f"{usage['rss_kb_per_call']:.0f} KB per call"
        )
    else:
        lines.append("bridge CPU and RSS: not measured (give --bridge-pid)")
    lines += [f"  failure: {reason}" for reason in sorted(set(stats.errors))[:10]]
    return lines
