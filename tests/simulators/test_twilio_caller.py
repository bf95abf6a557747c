"""The Twilio caller: webhook signing, TwiML parsing and the Media Streams side, including
Twilio's playback/mark/clear model, against tiny local HTTP and WebSocket servers."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator
from websockets.asyncio.server import ServerConnection, serve

from calls.simulators import audio
from calls.simulators.twilio_caller import (
    MediaStreamCall,
    compute_signature,
    inbound_call_params,
    parse_twiml,
    run_inbound_call,
    signed_webhook_post,
)

TOKEN = "test-auth-token-123"


# --- a tiny HTTP server standing in for the webhook ---------------------------------------------


class WebhookServer:
    def __init__(self, reply: Callable[[str, dict[str, str]], tuple[int, str]]) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                params = dict(parse_qsl(body, keep_blank_values=True))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "params": params})
                status, text = reply(self.path, params)
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def stream_twiml(url: str, **params: str) -> str:
    parameters = "".join(f'<Parameter name="{k}" value="{v}"/>' for k, v in params.items())
    stream = f'<Stream url="{url}">{parameters}</Stream>'
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect>{stream}</Connect></Response>'


def test_signed_webhook_post_validates_with_twilio_request_validator() -> None:
    with WebhookServer(lambda path, params: (200, "<Response/>")) as server:
        params = inbound_call_params(to="+15550001111", from_="+15552223333")
        status, body = signed_webhook_post(server.base_url, "/twilio/voice", params, TOKEN)
        public = "https://voice.example.com"
        signed_webhook_post(server.base_url, "/twilio/voice", params, TOKEN, public_base_url=public)
        signed_webhook_post(server.base_url, "/twilio/voice", params, None)
    assert (status, body) == (200, "<Response/>")
    first, second, unsigned = server.requests
    assert first["params"] == params
    assert first["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
    validator = RequestValidator(TOKEN)
    url = server.base_url + "/twilio/voice"
    assert validator.validate(url, first["params"], first["headers"]["X-Twilio-Signature"])
    assert not RequestValidator("other-token").validate(
        url, first["params"], first["headers"]["X-Twilio-Signature"]
    )
    tampered = {**first["params"], "To": "+15559999999"}
    assert not validator.validate(url, tampered, first["headers"]["X-Twilio-Signature"])
    # with a public base URL, the signature covers the public URL, not the one actually hit
    assert validator.validate(
        public + "/twilio/voice", second["params"], second["headers"]["X-Twilio-Signature"]
    )
    assert not validator.validate(url, second["params"], second["headers"]["X-Twilio-Signature"])
    assert "X-Twilio-Signature" not in unsigned["headers"]
    assert params["CallSid"].startswith("CA") and len(params["CallSid"]) == 34
    assert params["AccountSid"].startswith("AC") and params["Direction"] == "inbound"


def test_webhook_error_status_is_returned_not_raised() -> None:
    with WebhookServer(lambda path, params: (403, "Forbidden")) as server:
        assert signed_webhook_post(server.base_url, "/twilio/voice", {"a": "b"}, TOKEN) == (403, "Forbidden")


def test_parse_twiml_stream_with_parameters() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        '<Stream url="wss://bridge.example.com/media-stream" statusCallback="https://x/cb">'
        '<Parameter name="token" value="abc.def"/><Parameter name="call" value="42"/>'
        "</Stream></Connect><Say>Goodbye</Say></Response>"
    )
    reply = parse_twiml(body)
    assert reply.kind == "stream"
    assert reply.stream_url == "wss://bridge.example.com/media-stream"
    assert reply.parameters == {"token": "abc.def", "call": "42"}
    assert reply.status_callback == "https://x/cb"
    assert reply.verbs == ["Connect", "Say"]
    assert reply.says == ["Goodbye"]


def test_parse_twiml_apology_hangup_and_invalid() -> None:
    say = parse_twiml(
        "<Response><Say voice='alice'>Sorry, we cannot take your call.</Say><Hangup/></Response>"
    )
    assert (say.kind, say.says, say.hangup, say.stream_url) == (
        "say",
        ["Sorry, we cannot take your call."],
        True,
        None,
    )
    assert parse_twiml("<Response><Hangup/></Response>").kind == "hangup"
    assert parse_twiml("<Response><Reject/></Response>").kind == "other"
    assert parse_twiml("not xml <").kind == "invalid"
    assert parse_twiml("<Html/>").kind == "invalid"


# --- a tiny WebSocket server standing in for the bridge -----------------------------------------


class FakeBridge:
    """Records what the caller sends; `behaviour` scripts what it sends back."""

    def __init__(
        self, behaviour: Callable[[FakeBridge, ServerConnection], Awaitable[None]] | None = None
    ) -> None:
        self.behaviour = behaviour
        self.messages: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.headers: dict[str, str] = {}
        self.stream_sid: str | None = None
        self.started = asyncio.Event()
        self.got_message = asyncio.Event()
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        self.headers = dict(ws.request.headers.raw_items())  # type: ignore[union-attr]
        reader = asyncio.get_running_loop().create_task(self._read(ws))
        if self.behaviour is not None:
            await self.started.wait()
            await self.behaviour(self, ws)
        await reader

    async def _read(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        async for raw in ws:
            message = json.loads(raw)
            self.messages.append(message)
            self.times.append(loop.time())
            if message["event"] == "start":
                self.stream_sid = message["streamSid"]
                self.started.set()
            self.got_message.set()

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["event"] == event]

    async def send_media(self, ws: ServerConnection, data: bytes) -> None:
        await ws.send(
            json.dumps(
                {
                    "event": "media",
                    "streamSid": self.stream_sid,
                    "media": {"payload": base64.b64encode(data).decode()},
                }
            )
        )

    async def send_mark(self, ws: ServerConnection, name: str) -> None:
        await ws.send(json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.got_message.clear()
                await self.got_message.wait()


@pytest.fixture
async def bridge_factory() -> Iterator[Callable[..., Awaitable[FakeBridge]]]:
    servers = []

    async def make(behaviour: Any = None) -> FakeBridge:
        bridge = FakeBridge(behaviour)
        server = await serve(bridge.handler, "127.0.0.1", 0)
        servers.append(server)
        bridge.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/media-stream"
        return bridge

    yield make
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_stream_handshake_start_media_and_stop(bridge_factory: Any) -> None:
    bridge = await bridge_factory()
    call = MediaStreamCall(bridge.url, parameters={"token": "tok123"}, auth_token=TOKEN, pace=False)
    async with call:
        await call.say(audio.speech_like(100) + audio.silence(30))  # 130 ms → 7 frames (last padded)
        await call.send_dtmf("5")
    await bridge.wait_for(lambda: bool(bridge.of("stop")))

    signature = bridge.headers["X-Twilio-Signature"]
    assert RequestValidator(TOKEN).validate(bridge.url, {}, signature)
    events = [m["event"] for m in bridge.messages]
    assert events == ["connected", "start"] + ["media"] * 7 + ["dtmf", "stop"]
    assert bridge.messages[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = bridge.messages[1]
    assert start["sequenceNumber"] == "1"
    assert start["start"]["customParameters"] == {"token": "tok123"}
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert start["start"]["tracks"] == ["inbound"]
    assert start["streamSid"] == start["start"]["streamSid"] == call.stream_sid
    assert call.stream_sid.startswith("MZ") and start["start"]["callSid"].startswith("CA")
    media = bridge.of("media")
    assert [m["sequenceNumber"] for m in media] == [str(n) for n in range(2, 9)]
    assert [m["media"]["chunk"] for m in media] == [str(n) for n in range(1, 8)]
    assert [m["media"]["timestamp"] for m in media] == [str(20 * n) for n in range(7)]
    payloads = [base64.b64decode(m["media"]["payload"]) for m in media]
    assert all(len(p) == 160 for p in payloads)
    assert b"".join(payloads)[:1040] == audio.speech_like(100) + audio.silence(30)
    assert bridge.of("dtmf")[0]["dtmf"] == {"track": "inbound_track", "digit": "5"}
    assert bridge.of("stop")[0]["stop"] == {
        "accountSid": call.result.account_sid,
        "callSid": call.result.call_sid,
    }
    assert call.result.closed_by_server is False


async def test_paced_media_runs_in_real_time_and_fills_silence(bridge_factory: Any) -> None:
    bridge = await bridge_factory()
    async with MediaStreamCall(bridge.url, pace=True) as call:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await call.say(audio.speech_like(400))  # 20 frames
        elapsed = loop.time() - started
        await asyncio.sleep(0.2)  # a live line keeps sending silence frames
    assert 0.36 <= elapsed <= 0.6
    media = bridge.of("media")
    assert len(media) >= 26
    stamps = [int(m["media"]["timestamp"]) for m in media]
    assert stamps == sorted(stamps)
    # absolute clock: the 20th frame is due 380 ms after the first, not later
    assert abs((stamps[19] - stamps[0]) - 380) <= 20
    assert base64.b64decode(media[-1]["media"]["payload"]) == bytes([0xFF]) * 160


async def test_marks_are_echoed_after_their_audio_has_played(bridge_factory: Any) -> None:
    sent_at: dict[str, float] = {}

    async def behaviour(bridge: FakeBridge, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        await bridge.send_mark(ws, "empty")  # nothing queued: echoed at once
        sent_at["start"] = loop.time()
        await bridge.send_media(ws, audio.tone(440, 300))
        await bridge.send_mark(ws, "m1")
        await bridge.send_media(ws, audio.tone(440, 200))
        await bridge.send_mark(ws, "m2")

    bridge = await bridge_factory(behaviour)
    async with MediaStreamCall(bridge.url, pace=False) as call:
        await bridge.wait_for(lambda: len(bridge.of("mark")) == 3, timeout=3)
        await asyncio.sleep(0.05)
        heard = call.played_bytes
    marks = bridge.of("mark")
    assert [m["mark"]["name"] for m in marks] == ["empty", "m1", "m2"]
    assert all(m["streamSid"] == call.stream_sid and m["sequenceNumber"].isdigit() for m in marks)
    echo_times = {m["mark"]["name"]: bridge.times[bridge.messages.index(m)] - sent_at["start"] for m in marks}
    assert echo_times["empty"] < 0.05
    assert 0.28 <= echo_times["m1"] <= 0.42
    assert 0.48 <= echo_times["m2"] <= 0.65
    assert heard == 4000
    assert call.result.agent_audio == bytearray(audio.tone(440, 300) + audio.tone(440, 200))
    assert call.result.marks_echoed == ["empty", "m1", "m2"]


async def test_clear_drops_queued_audio_and_echoes_pending_marks_immediately(bridge_factory: Any) -> None:
    clear_sent: list[float] = []

    async def behaviour(bridge: FakeBridge, ws: ServerConnection) -> None:
        await bridge.send_media(ws, audio.tone(440, 2000))
        await bridge.send_mark(ws, "a")
        await bridge.send_media(ws, audio.tone(440, 500))
        await bridge.send_mark(ws, "b")
        await asyncio.sleep(0.3)
        clear_sent.append(asyncio.get_running_loop().time())
        await ws.send(json.dumps({"event": "clear", "streamSid": bridge.stream_sid}))

    bridge = await bridge_factory(behaviour)
    async with MediaStreamCall(bridge.url, pace=False) as call:
        await bridge.wait_for(lambda: len(bridge.of("mark")) == 2, timeout=3)
    marks = bridge.of("mark")
    assert [m["mark"]["name"] for m in marks] == ["a", "b"]
    first_echo = bridge.times[bridge.messages.index(marks[0])]
    assert first_echo - clear_sent[0] < 0.1  # not 2 s later
    assert call.result.clears == 1
    # 2.5 s queued, ~0.3 s played before the clear
    assert 2.1 * 8000 <= call.result.cleared_bytes <= 2.25 * 8000
    assert len(call.result.agent_audio) == 2500 * 8  # everything received is recorded


async def test_reply_latency_and_barge_in_measurements(bridge_factory: Any) -> None:
    async def behaviour(bridge: FakeBridge, ws: ServerConnection) -> None:
        # greet with 1 s of audio; when the caller talks over it, clear; reply 100 ms after their turn
        await bridge.send_media(ws, audio.tone(440, 1000))
        await bridge.wait_for(
            lambda: any(
                audio.ulaw_rms(base64.b64decode(m["media"]["payload"])) > 500 for m in bridge.of("media")
            )
        )
        await ws.send(json.dumps({"event": "clear", "streamSid": bridge.stream_sid}))
        await bridge.wait_for(lambda: len(bridge.of("media")) >= 20)
        await asyncio.sleep(0.1)
        await bridge.send_media(ws, audio.tone(440, 100))

    bridge = await bridge_factory(behaviour)
    async with MediaStreamCall(bridge.url, pace=True) as call:
        await call.wait_for_agent_audio(8000)
        await call.say(audio.speech_like(300) + audio.silence(100))
        assert await call.wait_for_reply(since_bytes=8000, start_timeout=3, quiet_ms=200, finish_timeout=3)
    result = call.result
    assert len(result.barge_in_clear_ms) == 1 and result.barge_in_clear_ms[0] < 150
    assert len(result.reply_latencies_ms) == 1
    # last speech frame at ~300 ms, 100 ms of silence follows, the bridge answers 100 ms after frame 20
    assert 80 <= result.reply_latencies_ms[0] <= 350


async def test_server_close_ends_call_and_protocol_errors_are_recorded(
    tmp_path: Path, bridge_factory: Any
) -> None:
    async def behaviour(bridge: FakeBridge, ws: ServerConnection) -> None:
        await bridge.send_media(ws, audio.tone(300, 100))
        await ws.send(json.dumps({"event": "media", "streamSid": "MZwrong", "media": {"payload": "AAAA"}}))
        await ws.send(json.dumps({"event": "bogus", "streamSid": bridge.stream_sid}))
        await ws.close(1000, "bye")

    bridge = await bridge_factory(behaviour)
    call = MediaStreamCall(bridge.url, pace=True)
    async with call:
        assert await call.wait_closed(3)
        await call.say(audio.speech_like(100))  # the line is gone: returns at once
    result = call.result
    assert result.closed_by_server and result.close_code == 1000
    assert bridge.of("stop") == []  # nobody left to tell
    assert any("MZwrong" in e for e in result.protocol_errors)
    assert any("bogus" in e for e in result.protocol_errors)
    path = result.save_wav(tmp_path / "agent.wav", encoding="ulaw")
    assert audio.read_wav_ulaw(path) == audio.tone(300, 100) + b"\x00\x00\x00"


async def test_run_inbound_call_end_to_end(bridge_factory: Any) -> None:
    async def behaviour(bridge: FakeBridge, ws: ServerConnection) -> None:
        await bridge.send_media(ws, audio.tone(440, 200))  # greeting
        await bridge.wait_for(lambda: len(bridge.of("media")) >= 25)
        await bridge.send_media(ws, audio.tone(550, 300))  # reply

    bridge = await bridge_factory(behaviour)

    def reply(path: str, params: dict[str, str]) -> tuple[int, str]:
        if path == "/twilio/voice":
            return 200, stream_twiml(bridge.url, token="t0k")
        return 204, ""

    with WebhookServer(reply) as server:
        outcome = await run_inbound_call(
            server.base_url,
            to="+15550001111",
            from_="+15552223333",
            auth_token=TOKEN,
            utterances=[audio.speech_like(300)],
            pace=False,
            quiet_ms=200,
            trailing_silence_ms=200,
        )
    assert outcome.webhook_status == 200 and outcome.twiml.kind == "stream"
    assert outcome.call is not None
    assert bytes(outcome.call.agent_audio) == audio.tone(440, 200) + audio.tone(550, 300)
    assert bridge.of("start")[0]["start"]["customParameters"] == {"token": "t0k"}
    assert bridge.of("start")[0]["start"]["callSid"] == outcome.call_params["CallSid"]
    assert outcome.status_callback_status == 204
    status_request = server.requests[-1]
    assert status_request["path"] == "/twilio/status"
    assert status_request["params"]["CallStatus"] == "completed"
    assert RequestValidator(TOKEN).validate(
        server.base_url + "/twilio/status",
        status_request["params"],
        status_request["headers"]["X-Twilio-Signature"],
    )
    assert outcome.call.ws_rtt_ms


async def test_run_inbound_call_apology_path() -> None:
    with WebhookServer(lambda p, q: (200, "<Response><Say>Sorry.</Say><Hangup/></Response>")) as server:
        outcome = await run_inbound_call(server.base_url, to="+1555", from_="+1666", auth_token=TOKEN)
    assert outcome.twiml.kind == "say" and outcome.call is None
    assert len(server.requests) == 1


def test_compute_signature_matches_validator() -> None:
    url = "wss://bridge.example.com/media-stream"
    assert RequestValidator(TOKEN).validate(url, {}, compute_signature(url, {}, TOKEN))
