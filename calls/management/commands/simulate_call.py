"""Act as Twilio for one inbound call: signed webhook → TwiML → media stream with the WAV's audio in real
time → save what the agent said as a WAV → print the transcript."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from websockets.exceptions import WebSocketException

from calls.management.commands import _simulators
from calls.models import Call
from calls.services import TEST_CALL_PARAM

try:
    from calls.simulators import audio
    from calls.simulators.twilio_caller import parse_twiml, run_inbound_call, signed_webhook_post
except ImportError:  # a production image: handle() says so
    audio = None  # type: ignore[assignment]


class Command(BaseCommand):
    help = "Place a simulated Twilio call against a running voiceops (local or deployed) and record the reply."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--to", required=True, help="The dialled number (E.164), e.g. +15005550006.")
        parser.add_argument("--from", dest="from_", default="+15005550001", help="The caller's number.")
        parser.add_argument("--wav", help="What the caller says (WAV, any rate; mono preferred). "
                                          "Default: two seconds of synthetic speech.")
        parser.add_argument("--out", default="reply.wav", help="Where to save the agent's audio (WAV).")
        parser.add_argument("--url", default=settings.PUBLIC_WEBHOOK_BASE_URL,
                            help="Base URL of the webhook (default PUBLIC_WEBHOOK_BASE_URL).")
        parser.add_argument("--auth-token", default=settings.TWILIO_AUTH_TOKEN,
                            help="Twilio auth token used to sign (default TWILIO_AUTH_TOKEN; empty = unsigned).")
        parser.add_argument("--no-greeting", action="store_true", help="Do not wait for the agent to speak first.")
        parser.add_argument("--timeout", type=float, default=20.0, help="Seconds to wait for each reply.")

    def handle(self, *args: Any, **opts: Any) -> None:
        _simulators.require(audio)
        if opts["wav"]:
            try:
                caller_audio = audio.read_wav_ulaw(opts["wav"])
            except (OSError, audio.WavError) as exc:
                raise CommandError(f"cannot read {opts['wav']}: {exc}") from None
        else:
            caller_audio = audio.speech_like(2000)
        try:
            outcome = asyncio.run(run_inbound_call(
                opts["url"].rstrip("/"), to=opts["to"], from_=opts["from_"], auth_token=opts["auth_token"] or None,
                utterances=[caller_audio], expect_greeting=not opts["no_greeting"], reply_timeout=opts["timeout"],
                extra_params={TEST_CALL_PARAM: "1"},
            ))
        except (OSError, WebSocketException) as exc:
            raise CommandError(f"could not place the call: {exc}") from None
        if outcome.webhook_status != 200:
            raise CommandError(f"webhook answered HTTP {outcome.webhook_status}: {outcome.webhook_body[:200]}")
        if outcome.call is None:
            said = " ".join(outcome.twiml.says)
            raise CommandError(f"not answered by the agent: the webhook answered {outcome.twiml.kind}"
                               f"{f' ({said!r})' if said else ''}; manage.py check_config says why")
        result = outcome.call
        heard = result.agent_audio_ms
        self.stdout.write(f"Call {result.call_sid}: sent {result.media_frames_sent} frames, "
                          f"heard {heard / 1000:.1f}s of agent audio")
        if heard:
            self.stdout.write(f"Agent audio saved to {result.save_wav(Path(opts['out']))}")
        if result.reply_latencies_ms:
            self.stdout.write("Reply latency: " + ", ".join(f"{ms:.0f} ms" for ms in result.reply_latencies_ms))
        if result.closed_by_server:
            self.stdout.write(f"Stream closed by the bridge: {result.close_code} {result.close_reason or ''}")
        self._follow_connect_action(outcome, opts)
        call = self._print_transcript(result.call_sid)
        if call is not None and call.status == Call.Status.FAILED:
            raise CommandError(f"the call failed: {call.get_end_reason_display() or call.twilio_status}")
        if not heard:
            raise CommandError("the agent never spoke: no reply to save (is the OpenAI endpoint answering?)")

    def _follow_connect_action(self, outcome: Any, opts: dict[str, Any]) -> None:
        """Like Twilio: when the stream ends, ask the <Connect action> URL what comes next."""
        root = ET.fromstring(outcome.webhook_body)  # noqa: S314 - our own webhook's reply
        connect = root.find("Connect")
        action = connect.get("action") if connect is not None else None
        if not action or not action.startswith(opts["url"].rstrip("/")):
            return
        path = action[len(opts["url"].rstrip("/")):]
        params = {**outcome.call_params, "CallStatus": "in-progress"}
        status, body = signed_webhook_post(opts["url"].rstrip("/"), path, params, opts["auth_token"] or None)
        after = parse_twiml(body) if status == 200 else None
        if after is None:
            self.stdout.write(f"After the stream: HTTP {status}")
        else:
            said = " ".join(after.says)
            suffix = f" — {said!r}" if said else ""
            self.stdout.write(f"After the stream Twilio would: {', '.join(after.verbs)}{suffix}")

    def _print_transcript(self, call_sid: str) -> Call | None:
        """Print the stored transcript; returns the call as stored (None when this database lacks it)."""
        call = None
        for _ in range(20):  # the bridge records the end a moment after the stream closes
            try:
                call = Call.objects.filter(twilio_call_sid=call_sid).first()
            except DatabaseError:
                self.stdout.write("(transcript not available: this machine cannot reach the call database)")
                return None
            if call is None or call.end_reason:
                break
            time.sleep(0.1)
        if call is None:
            self.stdout.write("(transcript not available: the call is not in this database)")
            return None
        events = list(call.events.filter(kind__in=["caller", "agent", "tool_call", "error"]))
        self.stdout.write(f"Transcript ({call.get_status_display()}, {call.end_reason or 'no end reason yet'}):")
        for event in events:
            self.stdout.write(f"  {event.t_ms / 1000:6.1f}s {event.kind:>9}: {event.text}")
