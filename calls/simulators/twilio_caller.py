"""Twilio's side of an inbound phone call, for tests, `simulate_call` and `loadtest`.

1. `signed_webhook_post` — the voice webhook POST exactly as Twilio sends it (form body,
   `X-Twilio-Signature` from the `twilio` package's own `RequestValidator`).
2. `parse_twiml` — what Twilio would do with the reply: `<Connect><Stream>` (+ `<Parameter>`s),
   or the apology path (`<Say>` / `<Hangup>`).
3. `MediaStreamCall` — the Media Streams WebSocket: `connected`, `start`, 20 ms μ-law `media`
   frames paced by an absolute clock, `dtmf`, `stop`; and Twilio's playback model for what the
   server sends back: audio plays at 8 bytes/ms, a `mark` is echoed once the audio queued before
   it has played, `clear` drops the queue and echoes every pending mark at once (Twilio: "sends
   back mark messages matching any remaining mark messages").
4. `run_inbound_call` — all of the above for one scripted call.

Timing measurements (for `loadtest`) are in `CallResult`:
- `reply_latencies_ms`: end of a caller utterance (its last speech frame sent) → first agent
  media frame received. This is the full media round trip caller → bridge → model → caller,
  including the model's end-of-turn silence wait.
- `barge_in_clear_ms`: first speech frame sent while agent audio was still playing → `clear`.
- `ws_rtt_ms`: WebSocket ping round trips to the bridge (transport only).

Received agent audio is kept as μ-law bytes (`CallResult.agent_audio`, in arrival order, including
audio later discarded by `clear`); `CallResult.save_wav` writes it as 16-bit PCM WAV by default
(playable anywhere) or byte-exact μ-law WAV with `encoding="ulaw"`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from . import audio

logger = logging.getLogger(__name__)

WEBHOOK_USER_AGENT = "TwilioProxy/1.1"
STREAM_USER_AGENT = "Twilio.TmeWs/1.0"
SPEECH_RMS_THRESHOLD = 500.0  # frames above this count as caller speech for latency bookkeeping


def new_sid(prefix: str) -> str:
    """A Twilio-looking SID: two-letter prefix + 32 hex digits (CA…, AC…, MZ…)."""
    return prefix + uuid.uuid4().hex


# --- webhook ------------------------------------------------------------------------------------


def compute_signature(url: str, params: dict[str, str], auth_token: str) -> str:
    """`X-Twilio-Signature` for a POST of `params` to the public `url` (twilio's own algorithm)."""
    return RequestValidator(auth_token).compute_signature(url, params)


def inbound_call_params(
    *,
    to: str,
    from_: str,
    call_sid: str | None = None,
    account_sid: str | None = None,
    call_status: str = "ringing",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The form fields Twilio posts to the voice webhook for an inbound call."""
    params = {
        "AccountSid": account_sid or new_sid("AC"),
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid or new_sid("CA"),
        "CallStatus": call_status,
        "Called": to,
        "Caller": from_,
        "Direction": "inbound",
        "From": from_,
        "To": to,
        "CallerCountry": "US",
        "CalledCountry": "US",
        "FromCountry": "US",
        "ToCountry": "US",
    }
    params.update(extra or {})
    return params


def status_callback_params(
    call_params: dict[str, str], status: str = "completed", duration_s: int = 0
) -> dict[str, str]:
    """The form fields of a call status callback for the call described by `call_params`."""
    params = {
        k: call_params[k]
        for k in ("AccountSid", "ApiVersion", "CallSid", "Called", "Caller", "Direction", "From", "To")
        if k in call_params
    }
    params["CallStatus"] = status
    if status == "completed":
        params["CallDuration"] = str(duration_s)
        params["Duration"] = str(max(1, (duration_s + 59) // 60))
    params["Timestamp"] = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    params["SequenceNumber"] = "0"
    return params


def signed_webhook_post(
    base_url: str,
    path: str,
    params: dict[str, str],
    auth_token: str | None,
    *,
    public_base_url: str | None = None,
    timeout: float = 10.0,
    extra_headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """POST `params` form-encoded to `base_url + path` like Twilio; returns (status, body).

    The signature covers `public_base_url + path` (the URL Twilio was configured with) when given,
    else the URL actually requested. Without an auth token the request goes unsigned."""
    url = base_url.rstrip("/") + path
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"webhook URL must be http(s): {url}")
    signed_url = (public_base_url or base_url).rstrip("/") + path
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "User-Agent": WEBHOOK_USER_AGENT,
        "Accept": "*/*",
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
    }
    if auth_token:
        headers["X-Twilio-Signature"] = compute_signature(signed_url, params, auth_token)
    headers.update(extra_headers or {})
    request = urllib.request.Request(url, data=urlencode(params).encode(), headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace") if exc.fp is not None else ""
        return exc.code, body


# --- TwiML ----------------------------------------------------------------------------------


@dataclass
class TwimlReply:
    """What Twilio would do with a webhook reply."""

    kind: str  # "stream", "say" (apology path), "hangup", "other" or "invalid"
    stream_url: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    status_callback: str | None = None
    says: list[str] = field(default_factory=list)
    hangup: bool = False
    verbs: list[str] = field(default_factory=list)  # top-level verbs in order
    error: str | None = None


def parse_twiml(body: str) -> TwimlReply:
    """Read a TwiML `<Response>` the way Twilio interprets it for our purposes."""
    try:
        root = ET.fromstring(body)  # noqa: S314 - trusted: our own server's reply in tests
    except ET.ParseError as exc:
        return TwimlReply(kind="invalid", error=f"not XML: {exc}")
    if root.tag != "Response":
        return TwimlReply(kind="invalid", error=f"root element is <{root.tag}>, not <Response>")
    reply = TwimlReply(kind="other")
    reply.verbs = [child.tag for child in root]
    for verb in root:
        if verb.tag == "Connect":
            stream = verb.find("Stream")
            if stream is not None and reply.stream_url is None:
                reply.stream_url = stream.get("url")
                reply.status_callback = stream.get("statusCallback")
                for parameter in stream.findall("Parameter"):
                    name = parameter.get("name")
                    if name:
                        reply.parameters[name] = parameter.get("value", "")
        elif verb.tag == "Say":
            reply.says.append((verb.text or "").strip())
        elif verb.tag == "Hangup":
            reply.hangup = True
    if reply.stream_url:
        reply.kind = "stream"
    elif reply.says:
        reply.kind = "say"
    elif reply.hangup:
        reply.kind = "hangup"
    return reply


# --- media stream ------------------------------------------------------------------------------


@dataclass
class CallResult:
    """Everything one simulated call observed."""

    stream_sid: str
    call_sid: str
    account_sid: str
    agent_audio: bytearray = field(default_factory=bytearray)
    messages: list[dict[str, Any]] = field(default_factory=list)  # server → Twilio messages
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    cleared_bytes: int = 0
    media_frames_sent: int = 0
    media_frames_received: int = 0
    protocol_errors: list[str] = field(default_factory=list)
    reply_latencies_ms: list[float] = field(default_factory=list)
    barge_in_clear_ms: list[float] = field(default_factory=list)
    ws_rtt_ms: list[float] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None
    closed_by_server: bool = False
    started_at: float = 0.0
    ended_at: float = 0.0

    @property
    def agent_audio_ms(self) -> float:
        return audio.duration_ms(bytes(self.agent_audio))

    def save_wav(self, path: str | Path, encoding: str = "pcm16") -> Path:
        """Write the received agent audio as a WAV (see `audio.ulaw_to_wav_bytes`)."""
        return audio.write_wav_ulaw(path, bytes(self.agent_audio), encoding)


@dataclass
class _Frame:
    payload: bytes
    speech: bool
    last_speech: bool
    done: asyncio.Future[None] | None = None


class MediaStreamCall:
    """One Twilio Media Stream, from Twilio's side. Use as `async with MediaStreamCall(...) as call:`.

    pace=True sends media in real time (20 ms per frame, absolute clock) and keeps sending
    silence between utterances like a live phone line; pace=False sends frames as fast as the
    socket takes them and nothing in between. playback="realtime" plays received audio at
    8 bytes/ms for mark timing; "instant" treats it as played on arrival."""

    def __init__(
        self,
        stream_url: str,
        *,
        parameters: dict[str, str] | None = None,
        auth_token: str | None = None,
        account_sid: str | None = None,
        call_sid: str | None = None,
        connect_url: str | None = None,
        pace: bool = True,
        continuous: bool | None = None,
        playback: str = "realtime",
        record_messages: bool = True,
        open_timeout: float = 10.0,
    ) -> None:
        if playback not in ("realtime", "instant"):
            raise ValueError("playback must be 'realtime' or 'instant'")
        if continuous and not pace:
            raise ValueError("a continuous (always-sending) line needs pace=True")
        self.stream_url = stream_url
        self.connect_url = connect_url or stream_url
        self.parameters = dict(parameters or {})
        self.auth_token = auth_token
        self.pace = pace
        self.continuous = pace if continuous is None else continuous
        self.playback = playback
        self.record_messages = record_messages
        self.open_timeout = open_timeout
        self.result = CallResult(
            stream_sid=new_sid("MZ"),
            call_sid=call_sid or new_sid("CA"),
            account_sid=account_sid or new_sid("AC"),
        )
        self.ws: ClientConnection | None = None
        self._sequence = 0
        self._chunk = 0
        self._clock_start = 0.0  # loop time of stream start
        self._anchor = 0.0  # loop time at which frame `_anchor_frame` is due
        self._anchor_frame = 0
        self._play_deadline = 0.0  # loop time when queued agent audio finishes playing
        self._pending_marks: deque[tuple[float, str]] = deque()
        self._mark_wakeup = asyncio.Event()
        self._media_event = asyncio.Event()
        self._mic_queue: deque[_Frame] = deque()
        self._mic_wakeup = asyncio.Event()
        self._last_media_at = 0.0
        self._awaiting_reply_since: float | None = None
        self._barge_in_since: float | None = None
        self._in_utterance = False
        self._send_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._receiver: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> MediaStreamCall:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def stream_sid(self) -> str:
        return self.result.stream_sid

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    async def connect(self) -> None:
        """Open the socket (signed like Twilio signs it) and send `connected` + `start`."""
        headers = {"User-Agent": STREAM_USER_AGENT}
        if self.auth_token:
            # Twilio signs the WebSocket URL with no parameters.
            headers["X-Twilio-Signature"] = compute_signature(self.stream_url, {}, self.auth_token)
        self.ws = await connect(
            self.connect_url,
            additional_headers=headers,
            open_timeout=self.open_timeout,
            ping_interval=None,
            max_size=2**20,
            user_agent_header=None,
        )
        now = self._loop_time()
        self._clock_start = self._anchor = now
        self._play_deadline = now
        self.result.started_at = time.time()
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"}, numbered=False)
        await self._send(
            {
                "event": "start",
                "streamSid": self.stream_sid,
                "start": {
                    "accountSid": self.result.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.result.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": dict(self.parameters),
                },
            }
        )
        loop = asyncio.get_running_loop()
        self._receiver = loop.create_task(self._receive_loop())
        self._tasks.append(self._receiver)
        self._tasks.append(loop.create_task(self._mark_pump()))
        if self.continuous:
            self._tasks.append(loop.create_task(self._mic_loop()))

    async def stop(self) -> None:
        """Hang up: send `stop` and close (skipped if the server already closed the socket)."""
        if self._stopped:
            return
        self._stopped = True
        for task in self._tasks:
            if task is not self._receiver:
                task.cancel()
        if self.ws is not None and not self.closed.is_set():
            with contextlib.suppress(ConnectionClosed):
                await self._send(
                    {
                        "event": "stop",
                        "streamSid": self.stream_sid,
                        "stop": {"accountSid": self.result.account_sid, "callSid": self.result.call_sid},
                    }
                )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.result.ended_at = time.time()
        if self.ws is not None and self.result.close_code is None:
            self.result.close_code = self.ws.close_code
            self.result.close_reason = self.ws.close_reason

    async def wait_closed(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109 - a deadline is the point
        """Wait for the server to close the stream; True if it did."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)
        return self.closed.is_set()

    # -- sending ------------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any], *, numbered: bool = True) -> None:
        assert self.ws is not None, "connect() first"
        async with self._send_lock:
            if numbered:
                self._sequence += 1
                message = {
                    "event": message["event"],
                    "sequenceNumber": str(self._sequence),
                    **{k: v for k, v in message.items() if k != "event"},
                }
            await self.ws.send(json.dumps(message))

    async def _send_frame(self, frame: _Frame) -> None:
        """Send one 20 ms media frame at its due time on the absolute media clock."""
        loop_now = self._loop_time()
        if self.pace:
            due = self._anchor + (self._chunk - self._anchor_frame) * audio.FRAME_MS / 1000
            if due < loop_now - 0.1:
                # Idle gap (non-continuous mode) or a stall: re-anchor instead of bursting to catch up.
                self._anchor, self._anchor_frame, due = loop_now, self._chunk, loop_now
            if due > loop_now:
                await asyncio.sleep(due - loop_now)
            timestamp = round((due - self._clock_start) * 1000)
        else:
            timestamp = self._chunk * audio.FRAME_MS
        self._chunk += 1
        now = self._loop_time()
        if frame.speech and not self._in_utterance:
            self._in_utterance = True
            if self._unplayed_bytes(now) > 0 and self._barge_in_since is None:
                self._barge_in_since = now
        await self._send(
            {
                "event": "media",
                "streamSid": self.stream_sid,
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(timestamp),
                    "payload": base64.b64encode(frame.payload).decode("ascii"),
                },
            }
        )
        self.result.media_frames_sent += 1
        if frame.last_speech:
            self._in_utterance = False
            self._awaiting_reply_since = self._loop_time()
        if frame.done is not None and not frame.done.done():
            frame.done.set_result(None)

    async def _mic_loop(self) -> None:
        """Continuous mode: a live line sends a frame every 20 ms, silence when nobody talks."""
        silence = bytes([audio.ULAW_SILENCE]) * audio.FRAME_BYTES
        try:
            while not self.closed.is_set():
                frame = self._mic_queue.popleft() if self._mic_queue else _Frame(silence, False, False)
                await self._send_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            # The line is gone: release anyone waiting in say(); what was not sent is moot.
            for pending in self._mic_queue:
                if pending.done is not None and not pending.done.done():
                    pending.done.set_result(None)
            self._mic_queue.clear()

    def _frames_for(self, ulaw: bytes) -> list[_Frame]:
        chunks = list(audio.frames(ulaw))
        speech = [audio.ulaw_rms(chunk) >= SPEECH_RMS_THRESHOLD for chunk in chunks]
        last = max((i for i, is_speech in enumerate(speech) if is_speech), default=-1)
        return [_Frame(chunk, speech[i], i == last) for i, chunk in enumerate(chunks)]

    async def say(self, ulaw: bytes, *, wait: bool = True) -> None:
        """Speak μ-law audio (any length; padded to 20 ms frames). Include trailing silence so
        the far end's VAD sees the turn end. Returns once every frame has been sent (wait=True)."""
        frames = self._frames_for(ulaw)
        if not frames or self.closed.is_set() or self._stopped:
            return
        if not self.continuous:
            for frame in frames:
                await self._send_frame(frame)
            return
        frames[-1].done = asyncio.get_running_loop().create_future()
        self._mic_queue.extend(frames)
        if wait:
            await frames[-1].done

    async def send_silence(self, ms: int) -> None:
        """Silence for `ms`: sent as frames when not continuous, else just time passing."""
        if self.continuous:
            await asyncio.sleep(ms / 1000)
        else:
            await self.say(audio.silence(ms))

    async def send_dtmf(self, digit: str) -> None:
        """A keypad press, as Twilio reports it on a bidirectional stream."""
        await self._send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def measure_rtt(self) -> float | None:
        """One WebSocket ping round trip in ms (recorded in `ws_rtt_ms`)."""
        if self.ws is None or self.closed.is_set():
            return None
        try:
            waiter = await self.ws.ping()
            latency = await asyncio.wait_for(waiter, 5)
        except (ConnectionClosed, TimeoutError):
            return None
        self.result.ws_rtt_ms.append(latency * 1000)
        return latency * 1000

    # -- receiving and playback ------------------------------------------------------------------

    def _unplayed_bytes(self, now: float) -> int:
        if self.playback == "instant":
            return 0
        return max(0, round((self._play_deadline - now) * audio.SAMPLE_RATE))

    @property
    def played_bytes(self) -> int:
        """Agent audio the caller has heard so far (received - cleared - still queued)."""
        return (
            len(self.result.agent_audio) - self.result.cleared_bytes - self._unplayed_bytes(self._loop_time())
        )

    @property
    def pending_marks(self) -> list[str]:
        return [name for _, name in self._pending_marks]

    async def _receive_loop(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                await self._on_message(raw)
        except ConnectionClosed:
            pass
        finally:
            if not self._stopped:
                self.result.closed_by_server = True
            self.result.close_code = self.ws.close_code
            self.result.close_reason = self.ws.close_reason
            self.closed.set()
            self._media_event.set()
            self._mark_wakeup.set()

    async def _on_message(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self.result.protocol_errors.append("binary frame received; Twilio expects JSON text")
            return
        try:
            message = json.loads(raw)
        except ValueError:
            self.result.protocol_errors.append(f"invalid JSON: {raw[:80]!r}")
            return
        if not isinstance(message, dict):
            self.result.protocol_errors.append(f"not a JSON object: {raw[:80]!r}")
            return
        event = message.get("event")
        if message.get("streamSid") != self.stream_sid:
            self.result.protocol_errors.append(f"{event}: streamSid {message.get('streamSid')!r} is not ours")
        now = self._loop_time()
        if event == "media":
            payload = (message.get("media") or {}).get("payload")
            try:
                data = base64.b64decode(payload or "", validate=True)
            except (binascii.Error, ValueError):
                self.result.protocol_errors.append("media: payload is not base64")
                return
            if not data:
                self.result.protocol_errors.append("media: empty payload")
            self._record(message, strip_payload=True)
            self.result.agent_audio += data
            self.result.media_frames_received += 1
            self._last_media_at = now
            if self.playback == "realtime":
                start = max(now, self._play_deadline)
                self._play_deadline = start + len(data) / audio.SAMPLE_RATE
            if self._awaiting_reply_since is not None:
                self.result.reply_latencies_ms.append((now - self._awaiting_reply_since) * 1000)
                self._awaiting_reply_since = None
            self._media_event.set()
        elif event == "mark":
            name = (message.get("mark") or {}).get("name")
            self._record(message)
            if not isinstance(name, str):
                self.result.protocol_errors.append("mark: missing mark.name")
                return
            self.result.marks_received.append(name)
            due = self._play_deadline if self.playback == "realtime" else now
            self._pending_marks.append((due, name))
            self._mark_wakeup.set()
        elif event == "clear":
            self._record(message)
            self.result.clears += 1
            self.result.cleared_bytes += self._unplayed_bytes(now)
            self._play_deadline = now
            if self._barge_in_since is not None:
                self.result.barge_in_clear_ms.append((now - self._barge_in_since) * 1000)
                self._barge_in_since = None
            while self._pending_marks:
                _, name = self._pending_marks.popleft()
                await self._echo_mark(name)
        else:
            self._record(message)
            self.result.protocol_errors.append(f"unknown event {event!r}")

    def _record(self, message: dict[str, Any], *, strip_payload: bool = False) -> None:
        if not self.record_messages:
            return
        if strip_payload:
            # Keep the message shape but not a second copy of the audio (it is in agent_audio).
            media = dict(message.get("media") or {})
            media["payload_bytes"] = len(media.pop("payload", "") or "") * 3 // 4
            message = {**message, "media": media}
        self.result.messages.append(message)

    async def _echo_mark(self, name: str) -> None:
        self.result.marks_echoed.append(name)
        with contextlib.suppress(ConnectionClosed):
            await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def _mark_pump(self) -> None:
        """Echo each mark when the audio queued before it has finished playing."""
        while not self.closed.is_set():
            if not self._pending_marks:
                self._mark_wakeup.clear()
                await self._mark_wakeup.wait()
                continue
            due, name = self._pending_marks[0]
            delay = due - self._loop_time()
            if delay > 0:
                self._mark_wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._mark_wakeup.wait(), delay)
                continue  # re-check: a clear may have echoed it already
            self._pending_marks.popleft()
            await self._echo_mark(name)

    # -- waiting helpers ------------------------------------------------------------------------

    async def wait_for_agent_audio(self, min_bytes: int = 1, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        """Wait until at least `min_bytes` of agent audio arrived in total; False on timeout/close."""
        deadline = self._loop_time() + timeout
        while len(self.result.agent_audio) < min_bytes:
            remaining = deadline - self._loop_time()
            if remaining <= 0 or self.closed.is_set():
                return len(self.result.agent_audio) >= min_bytes
            self._media_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._media_event.wait(), remaining)
        return True

    async def wait_until_quiet(self, quiet_ms: int = 600, timeout: float = 30.0) -> bool:  # noqa: ASYNC109
        """Wait until the agent has sent nothing for `quiet_ms` and its audio finished playing."""
        deadline = self._loop_time() + timeout
        while not self.closed.is_set():
            now = self._loop_time()
            quiet_since = max(
                self._last_media_at, self._play_deadline if self.playback == "realtime" else 0.0
            )
            if now - quiet_since >= quiet_ms / 1000:
                return True
            if now >= deadline:
                return False
            await asyncio.sleep(min(0.05, deadline - now))
        return False

    async def wait_for_reply(
        self,
        *,
        since_bytes: int | None = None,
        start_timeout: float = 15.0,
        quiet_ms: int = 600,
        finish_timeout: float = 60.0,
    ) -> bool:
        """Wait for agent audio beyond `since_bytes` (default: what has arrived so far) to start,
        then for the agent to finish. Take `since_bytes` before speaking: a reply can begin
        while the caller's trailing silence is still being sent."""
        before = len(self.result.agent_audio) if since_bytes is None else since_bytes
        if not await self.wait_for_agent_audio(before + 1, start_timeout):
            return False
        return await self.wait_until_quiet(quiet_ms, finish_timeout)


# --- one whole call ------------------------------------------------------------------------------


@dataclass
class InboundCallResult:
    """Outcome of `run_inbound_call`."""

    call_params: dict[str, str]
    webhook_status: int
    webhook_body: str
    twiml: TwimlReply
    call: CallResult | None = None
    status_callback_status: int | None = None


async def run_inbound_call(
    base_url: str,
    *,
    to: str,
    from_: str,
    auth_token: str | None,
    utterances: Iterable[bytes] = (),
    public_base_url: str | None = None,
    voice_path: str = "/twilio/voice",
    status_path: str | None = "/twilio/status",
    stream_connect_url: str | None = None,
    pace: bool = True,
    expect_greeting: bool = True,
    reply_timeout: float = 20.0,
    quiet_ms: int = 700,
    trailing_silence_ms: int = 800,
    record_messages: bool = True,
    extra_params: dict[str, str] | None = None,
) -> InboundCallResult:
    """Place one inbound call: webhook → TwiML → media stream → utterances → hang up → status callback.

    Each utterance is followed by `trailing_silence_ms` of silence (so server VAD ends the turn),
    then the caller waits for the agent's reply to start and finish before speaking again."""
    params = inbound_call_params(to=to, from_=from_, extra=extra_params)
    status, body = await asyncio.to_thread(
        signed_webhook_post, base_url, voice_path, params, auth_token, public_base_url=public_base_url
    )
    twiml = parse_twiml(body) if status == 200 else TwimlReply(kind="invalid", error=f"HTTP {status}")
    outcome = InboundCallResult(call_params=params, webhook_status=status, webhook_body=body, twiml=twiml)
    if twiml.kind != "stream" or not twiml.stream_url:
        return outcome
    started = time.monotonic()
    call = MediaStreamCall(
        twiml.stream_url,
        parameters=twiml.parameters,
        auth_token=auth_token,
        account_sid=params["AccountSid"],
        call_sid=params["CallSid"],
        connect_url=stream_connect_url,
        pace=pace,
        record_messages=record_messages,
    )
    async with call:
        await call.measure_rtt()
        if expect_greeting:
            await call.wait_for_reply(
                since_bytes=0,
                start_timeout=reply_timeout,
                quiet_ms=quiet_ms,
                finish_timeout=reply_timeout * 3,
            )
        for utterance in utterances:
            if call.closed.is_set():
                break
            heard_before = len(call.result.agent_audio)
            await call.say(utterance + audio.silence(trailing_silence_ms))
            await call.wait_for_reply(
                since_bytes=heard_before,
                start_timeout=reply_timeout,
                quiet_ms=quiet_ms,
                finish_timeout=reply_timeout * 3,
            )
        await call.measure_rtt()
    outcome.call = call.result
    if status_path:
        callback = status_callback_params(params, "completed", round(time.monotonic() - started))
        outcome.status_callback_status, _ = await asyncio.to_thread(
            signed_webhook_post, base_url, status_path, callback, auth_token, public_base_url=public_base_url
        )
    return outcome


__all__ = [
    "CallResult",
    "InboundCallResult",
    "MediaStreamCall",
    "TwimlReply",
    "compute_signature",
    "inbound_call_params",
    "new_sid",
    "parse_twiml",
    "run_inbound_call",
    "signed_webhook_post",
    "status_callback_params",
]
