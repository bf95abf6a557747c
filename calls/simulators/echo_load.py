"""Echo load: simulated Twilio calls against a bridge whose OpenAI upstream is an echo server in this same process,
so that each direction of the media path is timed on one clock.

    stats = await run_echo_load(base_url, to, calls, hold_s, ramp_s, auth_token, upstream_port)

The bridge under test must use `ws://127.0.0.1:<upstream_port>/v1/realtime` as its OPENAI_REALTIME_URL. Each call
is set up by a signed voice webhook, then streams a numbered 20 ms μ-law frame every 20 ms (the caller's send time
in the payload) and answers marks at once. The echo upstream records each frame's arrival (caller → bridge →
upstream: the uplink) and sends it back as a `response.output_audio.delta` stamped with its own send time; the
caller records the arrival (upstream → bridge → caller: the downlink). A call is up once its first frame comes
back: from the frames sent after that, both directions count latency, frames lost (sent, never arrived) and
frames reordered (arrived after a later one). Loopback or your own test deployment only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from calls.simulators.twilio_caller import (
    compute_signature,
    inbound_call_params,
    new_sid,
    parse_twiml,
    signed_webhook_post,
)

FRAME_MS = 20
# call number, sequence number, caller's send time, upstream's send time; the rest of the frame is μ-law silence.
_STAMP = struct.Struct(">IIdd")
_SILENCE = b"\xff" * (160 - _STAMP.size)
GRACE_S = 1.0  # after its last frame, how long a caller waits for the echoes before hanging up


@dataclass
class Direction:
    """One direction's arrivals, counted from each call's first frame sent once the call was up."""

    latencies_ms: list[float] = field(default_factory=list)
    arrived: dict[int, set[int]] = field(default_factory=dict)  # per call: sequence numbers
    reordered: int = 0
    _last: dict[int, int] = field(default_factory=dict)

    def arrive(self, call: int, seq: int, latency_s: float) -> None:
        self.latencies_ms.append(latency_s * 1000)
        self.arrived.setdefault(call, set()).add(seq)
        if seq < self._last.get(call, -1):
            self.reordered += 1
        else:
            self._last[call] = seq


@dataclass
class EchoLoadStats:
    uplink: Direction = field(default_factory=Direction)
    downlink: Direction = field(default_factory=Direction)
    up_from: dict[int, int] = field(default_factory=dict)  # per call: the first frame sent after it was up
    sent: dict[int, int] = field(default_factory=dict)  # per call: frames sent
    setup_ms: list[float] = field(default_factory=list)  # webhook posted → first frame back
    completed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def frames_sent(self) -> int:
        return sum(self.sent.values())

    def counted(self) -> int:
        return sum(self.sent[call] - first for call, first in self.up_from.items())

    def lost(self, direction: Direction) -> int:
        return sum(
            len(set(range(first, self.sent[call])) - direction.arrived.get(call, set()))
            for call, first in self.up_from.items()
        )


def _frame(call: int, seq: int) -> str:
    return base64.b64encode(_STAMP.pack(call, seq, time.perf_counter(), 0.0) + _SILENCE).decode()


async def _echo(socket: ServerConnection, stats: EchoLoadStats) -> None:
    """The upstream: every appended frame goes back as agent audio, stamped with the upstream's send time."""
    try:
        async for text in socket:
            event = json.loads(text)
            if event.get("type") != "input_audio_buffer.append":
                continue
            frame = bytearray(base64.b64decode(event["audio"]))
            call, seq, sent_at, _ = _STAMP.unpack_from(frame)
            if seq >= stats.up_from.get(call, 1 << 32):
                stats.uplink.arrive(call, seq, time.perf_counter() - sent_at)
            _STAMP.pack_into(frame, 0, call, seq, sent_at, time.perf_counter())
            await socket.send(json.dumps({
                "type": "response.output_audio.delta", "event_id": f"evt_{call}_{seq}", "response_id": f"resp_{call}",
                "item_id": f"item_{call}", "output_index": 0, "content_index": 0,
                "delta": base64.b64encode(frame).decode(),
            }))
    except ConnectionClosed:
        pass


async def _call(number: int, base: str, to: str, end_at: float, token: str | None, stats: EchoLoadStats) -> None:
    params = inbound_call_params(to=to, from_="+15005550001")
    posted = time.perf_counter()
    status, body = await asyncio.to_thread(signed_webhook_post, base, "/twilio/voice", params, token)
    twiml = parse_twiml(body) if status == 200 else None
    if twiml is None or twiml.kind != "stream" or not twiml.stream_url:
        stats.errors.append(f"webhook HTTP {status}")
        return
    headers = {"X-Twilio-Signature": compute_signature(twiml.stream_url, {}, token)} if token else {}
    stream_sid = new_sid("MZ")
    stats.sent[number] = 0
    try:
        async with connect(twiml.stream_url, additional_headers=headers, ping_interval=None, compression=None,
                           max_size=2**20) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await ws.send(json.dumps({"event": "start", "streamSid": stream_sid, "start": {
                "accountSid": params["AccountSid"], "streamSid": stream_sid, "callSid": params["CallSid"],
                "tracks": ["inbound"], "customParameters": twiml.parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
            receiver = asyncio.create_task(_receive(number, ws, stream_sid, posted, stats))
            await _send_frames(number, ws, stream_sid, end_at, stats, receiver)
            await asyncio.sleep(GRACE_S)
            receiver.cancel()
            await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid,
                                      "stop": {"accountSid": params["AccountSid"], "callSid": params["CallSid"]}}))
        if ws.close_code not in (None, 1000):
            stats.errors.append(f"closed {ws.close_code} {ws.close_reason or ''}".strip())
        else:
            stats.completed += 1
    except ConnectionClosed as exc:  # one failed call is a data point, not the end
        stats.errors.append(f"closed {exc.rcvd.code} {exc.rcvd.reason}".strip() if exc.rcvd else "closed, no reason")
    except (OSError, TimeoutError) as exc:
        stats.errors.append(type(exc).__name__)


async def _send_frames(number: int, ws: ClientConnection, stream_sid: str, end_at: float, stats: EchoLoadStats,
                       receiver: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    seq = 0
    while loop.time() < end_at and not receiver.done():
        await ws.send(
            f'{{"event":"media","streamSid":"{stream_sid}","sequenceNumber":"{seq + 3}","media":{{"track":"inbound",'
            f'"chunk":"{seq + 1}","timestamp":"{seq * FRAME_MS}","payload":"{_frame(number, seq)}"}}}}'
        )
        seq += 1
        stats.sent[number] = seq
        await asyncio.sleep(max(0.0, start + seq * FRAME_MS / 1000 - loop.time()))


async def _receive(number: int, ws: ClientConnection, stream_sid: str, posted: float, stats: EchoLoadStats) -> None:
    try:
        async for text in ws:
            message = json.loads(text)
            event = message.get("event")
            if event == "media":
                frame = base64.b64decode(message["media"]["payload"])
                call, seq, _, upstream_sent_at = _STAMP.unpack_from(frame)
                if call != number:
                    stats.errors.append("a frame of another call")
                    continue
                if number not in stats.up_from:
                    stats.up_from[number] = stats.sent[number]
                    stats.setup_ms.append((time.perf_counter() - posted) * 1000)
                elif seq >= stats.up_from[number]:
                    stats.downlink.arrive(number, seq, time.perf_counter() - upstream_sent_at)
            elif event == "mark":  # played at once, as far as the bridge can tell
                await ws.send(json.dumps({"event": "mark", "streamSid": stream_sid,
                                          "mark": {"name": message["mark"]["name"]}}))
    except ConnectionClosed:
        pass


async def run_echo_load(base: str, to: str, calls: int, hold_s: float, ramp_s: float, token: str | None,
                        upstream_port: int, during_steady_state: Awaitable[Any] | None = None) -> EchoLoadStats:
    """Run the calls (started over `ramp_s`, all ending `ramp_s + hold_s` from now) with the echo upstream on
    127.0.0.1:`upstream_port`. `during_steady_state`, if given, is awaited once every call should be up."""
    stats = EchoLoadStats()
    async with serve(lambda socket: _echo(socket, stats), "127.0.0.1", upstream_port, compression=None,
                     max_size=2**22):
        loop = asyncio.get_running_loop()
        end_at = loop.time() + ramp_s + hold_s
        tasks = []
        for number in range(calls):
            tasks.append(asyncio.create_task(_call(number, base, to, end_at, token, stats)))
            await asyncio.sleep(ramp_s / calls)
        if during_steady_state is not None:
            await during_steady_state
        await asyncio.gather(*tasks)
    return stats
