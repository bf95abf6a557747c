"""Micro-benchmark of the bridge's per-frame codec work (one core, no sockets).

    .venv/bin/python -m bridge.benchmarks.codec_bench [--seconds 1.0]

Measures the two hot paths, codec work only, each beside what it replaced (the ratio is in the same run):
  inbound   Twilio media frame  -> twilio_media.parse (its regex fast path; before: parse_json, one
            json.loads) -> realtime_events.append_audio
  outbound  OpenAI audio delta  -> realtime_events.parse_server_event -> twilio_media.media_message
            (+ the playback marks: b64_audio_len, PlaybackTracker.on_audio_sent, mark_message, and parsing
            Twilio's echo + on_mark; a mark every MARK_EVERY_MS of audio, before: one per delta)
then the same frames exactly as the consumer runs them, through the call session and the Realtime engine
(`CallSession.caller_audio`, `RealtimeEngine.parse` + `CallSession.agent_audio`): the ratio of the two is what
the session layer costs per frame.
and prints frames per second and the implied calls per core for this work alone, at 100 messages per call
per second (50 each way, 20 ms frames). Socket I/O, TLS and the event loop cost far more; this is a floor.
If orjson or ujson is importable, it also prints what their `loads` would save on the inbound parse.
"""

from __future__ import annotations

import argparse
import base64
import functools
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from bridge import realtime_events as rt
from bridge import twilio_media as tw
from bridge.engine import AgentAudio
from bridge.playback import MARK_EVERY_MS, PlaybackTracker

MESSAGES_PER_CALL_PER_S = 100  # 50 inbound + 50 outbound frames of 20 ms
STREAM_SID = "MZ" + "0123456789abcdef" * 2


def twilio_media_frame(chunk: int, nbytes: int = 160) -> str:
    payload = base64.b64encode(os.urandom(nbytes)).decode()
    return json.dumps({
        "event": "media", "sequenceNumber": str(chunk + 2), "streamSid": STREAM_SID,
        "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20), "payload": payload},
    })


def openai_delta(nbytes: int) -> str:
    return json.dumps({
        "type": "response.output_audio.delta", "event_id": "event_CJ3lHwXNoMLsd0aZ7zcqP", "response_id":
        "resp_CJ3lHkGc0ZlJ4LqVYUs8d", "item_id": "item_CJ3lHnS7UZ6cZJp0YbW1x", "output_index": 0,
        "content_index": 0, "delta": base64.b64encode(os.urandom(nbytes)).decode(),
    })


def rate(step: Callable[[], object], seconds: float) -> float:
    """Calls per second of `step`, best of a few timed rounds (the least disturbed one)."""
    batch = 1000
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            step()
        elapsed = time.perf_counter() - start
        best = max(best, batch / elapsed)
        if time.perf_counter() >= deadline:
            return best


def out(line: str = "") -> None:
    print(line)  # noqa: T201 - printing the figures is this script's whole job


def report(label: str, per_second: float) -> None:
    out(f"  {label:<66} {per_second:>11,.0f} frames/s  {1e6 / per_second:6.2f} µs/frame")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per measurement (default 1.0)")
    args = parser.parse_args(argv)
    seconds = args.seconds

    frames = [twilio_media_frame(i) for i in range(64)]
    frame_iter = iter(range(1 << 62))

    def inbound() -> str:
        message = tw.parse(frames[next(frame_iter) & 63])
        return rt.append_audio(message.payload_b64)

    def inbound_full_parse() -> str:
        message = tw.parse_json(frames[next(frame_iter) & 63])
        return rt.append_audio(message.payload_b64)  # type: ignore[union-attr]

    out(f"Python {sys.version.split()[0]}; stdlib json; {seconds:.1f} s per measurement\n")
    out("Inbound (Twilio -> OpenAI), 20 ms frames:")
    inbound_full = rate(inbound_full_parse, seconds)
    report("parse_json(media) + append_audio (the full parse, before)", inbound_full)
    inbound_rate = rate(inbound, seconds)
    report(f"parse(media) + append_audio (fast path)  ({inbound_rate / inbound_full:.2f}x the frames/s)", inbound_rate)

    out("\nOutbound (OpenAI -> Twilio), with the marks' codec work (the mark, parsing its echo):")
    outbound_rates = {}
    for nbytes in (160, 800, 4800):
        deltas = [openai_delta(nbytes) for _ in range(16)]
        counter = iter(range(1 << 62))
        ms = nbytes // tw.MULAW_BYTES_PER_MS
        before = rate(functools.partial(outbound_with_marks, deltas, counter, PlaybackTracker(0)), seconds)
        after = rate(functools.partial(outbound_with_marks, deltas, counter, PlaybackTracker()), seconds)
        outbound_rates[nbytes] = (before, after)
        report(f"delta {ms} ms, a mark per delta (before)", before)
        report(f"delta {ms} ms, a mark every {MARK_EVERY_MS} ms        ({after / before:.2f}x the frames/s)", after)

    session = live_session()
    engine = session.engine
    deltas = [openai_delta(160) for _ in range(16)]
    counter = iter(range(1 << 62))

    def session_inbound() -> str | None:
        message = tw.parse(frames[next(frame_iter) & 63])
        return session.caller_audio(message.payload_b64, message.timestamp_ms)

    def session_outbound() -> tuple[str | None, str] | None:
        event = engine.parse(deltas[next(counter) & 15])
        assert type(event) is AgentAudio
        return session.agent_audio(event, 0.0)

    out("\nThrough the call session (what the consumer runs), ratio to the codec-only line:")
    session_in = rate(session_inbound, seconds)
    report(f"parse(media) + CallSession.caller_audio       ({session_in / inbound_rate:.2f}x)", session_in)
    codec_out = rate(lambda: _codec_outbound(deltas, counter), seconds)
    session_out = rate(session_outbound, seconds)
    report(f"RealtimeEngine.parse + CallSession.agent_audio ({session_out / codec_out:.2f}x)", session_out)

    recorded = live_session(recorded=True)
    clock = iter(range(1 << 62))  # ms: the recorder's timeline moves on 20 ms per frame, as in a call

    def recorded_inbound() -> str | None:
        message = tw.parse(frames[next(frame_iter) & 63])
        return recorded.caller_audio(message.payload_b64, next(clock) * 20)

    def recorded_outbound() -> tuple[str, str] | None:
        event = recorded.engine.parse(deltas[next(counter) & 15])
        return recorded.agent_audio(event, next(clock) * 0.02)

    out("With the call recorded (the recorder keeps a reference per frame), ratio to the session lines above:")
    rec_in, rec_out = rate(recorded_inbound, seconds), rate(recorded_outbound, seconds)
    report(f"parse(media) + CallSession.caller_audio       ({rec_in / session_in:.2f}x)", rec_in)
    report(f"RealtimeEngine.parse + CallSession.agent_audio ({rec_out / session_out:.2f}x)", rec_out)

    # Per call per second: 50 inbound frames and 50 outbound 20 ms deltas (the brief's 100 messages).
    per_call_before = 50 / inbound_full + 50 / outbound_rates[160][0]
    per_call_s = 50 / inbound_rate + 50 / outbound_rates[160][1]
    pair_rate = MESSAGES_PER_CALL_PER_S / per_call_s
    out(f"\nMixed 50/50 rate: {pair_rate:,.0f} messages/s -> about {pair_rate / MESSAGES_PER_CALL_PER_S:,.0f} "
        f"concurrent calls per core for this codec work alone ({MESSAGES_PER_CALL_PER_S} msgs/call/s);")
    out(f"codec CPU per call {per_call_s / per_call_before:.2f}x the full parse with a mark per delta's; "
        f"codec share of one core at 400 calls: {400 * per_call_s:.1%} (before: {400 * per_call_before:.1%})")

    alternatives = []
    for name in ("orjson", "ujson"):
        try:
            alternatives.append((name, importlib.import_module(name).loads))
        except ImportError:
            continue
    if alternatives:
        out("\njson.loads alone on a Twilio media frame, for comparison (not used by the bridge):")
        frame = frames[0]
        report("json.loads", rate(lambda: json.loads(frame), seconds))
        for name, loads in alternatives:
            report(f"{name}.loads", rate(lambda loads=loads: loads(frame), seconds))


_tracker = PlaybackTracker()


def outbound_with_marks(deltas: list[str], counter: Iterator[int], tracker: PlaybackTracker) -> str:
    """One delta to Twilio with the tracker's marks, and each mark's echo parsed and applied at once."""
    event = rt.parse_server_event(deltas[next(counter) & 15])
    mark = tracker.on_audio_sent(event.item_id, tw.b64_audio_len(event.delta))
    if mark is not None:
        tw.mark_message(STREAM_SID, mark)
        tracker.on_mark(tw.parse('{"event":"mark","sequenceNumber":"9","streamSid":"' + STREAM_SID
                                 + '","mark":{"name":"' + mark + '"}}').name)  # type: ignore[union-attr]
    return tw.media_message(STREAM_SID, event.delta)


def _codec_outbound(deltas: list[str], counter: Iterator[int]) -> tuple[str | None, str]:
    """The 20 ms outbound line with its marks, codec calls only: the session line's baseline (neither echoes
    the marks, so both trackers' pending queues grow alike)."""
    event = rt.parse_server_event(deltas[next(counter) & 15])
    mark = _tracker.on_audio_sent(event.item_id, tw.b64_audio_len(event.delta))
    return (None if mark is None else tw.mark_message(STREAM_SID, mark)), tw.media_message(STREAM_SID, event.delta)


def live_session(recorded: bool = False) -> Any:
    """A call session past its start, as the consumer holds it (an unsaved Call row: no database); `recorded`:
    with a call recorder keeping both legs."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceops.settings")
    django.setup()
    from bridge.call_config import CallConfig
    from bridge.realtime_engine import RealtimeEngine
    from bridge.session import CallSession
    from calls.models import Call

    snapshot = {"name": "bench", "instructions": "", "turn_detection": {"type": "server_vad"}}
    call = Call(id=1, twilio_call_sid="CA" + "0" * 32, stream_sid=STREAM_SID, config_snapshot=snapshot)
    from bridge.recording import CallRecorder

    session = CallSession(call, CallConfig.from_snapshot(snapshot, "gpt-realtime"), RealtimeEngine(snapshot), 0.0,
                          recorder=CallRecorder() if recorded else None)
    session.start(0.0, api_key_set=True)
    session.upstream_open()
    while session.pop_early_audio() is not None:
        pass
    return session


if __name__ == "__main__":
    main()
