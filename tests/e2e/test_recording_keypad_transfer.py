"""Recordings, keypad menus and warm transfers through the real bridge (runbridge subprocess) with Twilio played
by the caller simulator and OpenAI by the Realtime or GPT-Live simulator (`engine`)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db.models import Q

from bridge.transfer import BACK_LINE
from calls import services
from calls.models import AgentConfig, Call, CallEvent
from calls.simulators import audio
from calls.simulators.realtime_server import RealtimeSimulator, Reply, Script, ToolCall, agent_audio
from calls.simulators.twilio_caller import MediaStreamCall, parse_twiml, signed_webhook_post
from tests.bridge_tools.conftest import TlsFiles
from tests.conftest import TWILIO_TOKEN
from tests.e2e.conftest import bridge_env, only_realtime
from tests.e2e.test_call_flow import open_stream, stream_ended_twiml, wait_for
from tests.servers import ServerProcess, run_bridge

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def bridge(sim: RealtimeSimulator, tls_files: TlsFiles, django_db_setup, django_db_blocker,
           tmp_path_factory: pytest.TempPathFactory, media_root: Path) -> Iterator[ServerProcess]:
    """The conftest's bridge, storing recordings under a temporary MEDIA_ROOT."""
    with django_db_blocker.unblock(), run_bridge(tmp_path_factory.mktemp("bridge"),
                                                 **bridge_env(sim, tls_files, MEDIA_ROOT=str(media_root))) as server:
        yield server


def stereo(path: Path) -> tuple[array, array]:
    with wave.open(io.BytesIO(path.read_bytes())) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        samples = array("h", wav.readframes(wav.getnframes()))
    return samples[0::2], samples[1::2]


def onset(channel: array, start: int = 0, level: int = 2000) -> int:
    """The first sample at or after `start` louder than `level`."""
    return next(i for i in range(start, len(channel)) if abs(channel[i]) > level)


def pcm(ulaw: bytes) -> list[int]:
    return [audio.decode_sample(b) for b in ulaw]


def recorded(params: dict[str, str]) -> Call:
    return wait_for(lambda: Call.objects.filter(twilio_call_sid=params["CallSid"]).exclude(recording="").first(),
                    timeout_s=15)


async def test_a_recorded_call_has_the_caller_on_the_left_and_the_agent_on_the_right_aligned(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig, media_root: Path, engine: str
) -> None:
    agent.record_calls = True
    agent.save()
    fresh_sim.script = Script(turns=[Reply("Hello, how can I help?", audio_ms=1200),
                                     Reply("We open at eight.", audio_ms=1000)], transcripts=["When do you open?"])
    caller_words = audio.speech_like(800, seed=5)
    params, call = await open_stream(bridge)
    async with call:
        loop = asyncio.get_running_loop()
        assert await call.wait_for_agent_audio(min_bytes=1, timeout=10)
        greeting_at_ms = (loop.time() - call._clock_start) * 1000  # when the greeting reached "Twilio"
        await call.wait_until_quiet(quiet_ms=400, timeout=10)
        await asyncio.sleep(0.6)  # the greeting plays out at Twilio (simulated in real time)
        spoke_at_ms = (loop.time() - call._clock_start) * 1000
        await call.say(caller_words + audio.silence(900))
        await call.wait_for_reply(since_bytes=8 * 1200, start_timeout=10, quiet_ms=400, finish_timeout=10)
        await asyncio.sleep(1.2)  # the reply plays out
    assert fresh_sim.errors == []
    row = recorded(params)
    assert row.recording.name.startswith("recordings/") and row.recording.name.endswith(".wav")
    left, right = stereo(media_root / row.recording.name)
    assert len(left) >= 8 * 3000
    # Right: the greeting from when it reached Twilio, byte for byte (decoded), then the reply after the caller.
    greeting = pcm(agent_audio(1200, fresh_sim.pacing.pattern))
    start = onset(right)
    assert abs(start / 8 - greeting_at_ms) < 60, (start / 8, greeting_at_ms)
    first = next(i for i, s in enumerate(greeting) if abs(s) > 2000)  # the tone's own first loud sample
    assert right[start - first:start - first + len(greeting)].tolist() == greeting
    # Left: the caller's words, where Twilio's timestamps put them (after the greeting, before the reply).
    words = onset(left)
    assert abs(words / 8 - spoke_at_ms) < 150, (words / 8, spoke_at_ms)
    assert words > start - first + len(greeting)
    assert max(abs(s) for s in left[: words - 80]) < 2000  # nothing on the left before: the agent is not there
    reply = onset(right, start - first + len(greeting))
    assert reply > words + 8 * 800  # the reply came after the caller's turn
    wait_for(lambda: CallEvent.objects.filter(call=row, kind="status", text__startswith="call ended").exists())


@only_realtime  # the Realtime simulator's barge-in; GPT-Live's is covered by the session tests
async def test_audio_cleared_by_barge_in_is_not_in_the_recording(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig, media_root: Path, engine: str
) -> None:
    agent.record_calls = True
    agent.save()
    fresh_sim.script = Script(turns=[Reply("A very long greeting " * 5, audio_ms=6000), Reply("Sure.", audio_ms=500)])
    params, call = await open_stream(bridge)
    async with call:
        assert await call.wait_for_agent_audio(min_bytes=8 * 4000, timeout=10)  # generation runs ahead of playback
        await asyncio.sleep(1.5)
        await call.say(audio.speech_like(700) + audio.silence(800))
        await call.wait_for_reply(since_bytes=len(call.result.agent_audio), start_timeout=10, quiet_ms=500,
                                  finish_timeout=10)
        await asyncio.sleep(0.8)
    assert call.result.clears >= 1 and call.result.cleared_bytes > 8 * 1000
    heard_ms = fresh_sim.sessions[-1].truncates[0]["audio_end_ms"]
    _, right = stereo(media_root / recorded(params).recording.name)
    start = onset(right)
    loud = [i for i in range(start, len(right), 80) if max(abs(s) for s in right[i:i + 80]) > 2000]
    greeting_ms = next((i for i, j in itertools.pairwise(loud) if j - i > 8 * 200), loud[-1]) - start
    # The greeting is kept up to what the caller heard (the truncate point), not the 6 s the bridge forwarded.
    assert abs(greeting_ms / 8 - heard_ms) < 100, (greeting_ms / 8, heard_ms)


@pytest.mark.parametrize(("key", "action", "end_reason", "after"), [
    ("#", "end", Call.EndReason.AGENT_ENDED, ["Hangup"]),
    ("0", "transfer", Call.EndReason.TRANSFERRED, ["Dial"]),
])
async def test_keypad_menu_end_and_transfer_keys_end_the_stream(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig, engine: str, key: str, action: str,
    end_reason: str, after: list[str],
) -> None:
    agent.dtmf_actions = {key: action}
    agent.save()
    fresh_sim.script = Script(turns=[Reply("Hello.", audio_ms=300)])
    params, call = await open_stream(bridge)
    async with call:
        await call.wait_for_reply(since_bytes=0, start_timeout=10, quiet_ms=300, finish_timeout=10)
        await call.send_dtmf(key)
        assert await call.wait_closed(10), f"the bridge did not end the stream on the {action} key"
    assert fresh_sim.errors == []
    # The end key ends the call; the transfer key ends the agent's stream, and the call waits on the transfer.
    row = wait_for(lambda: Call.objects.filter(twilio_call_sid=params["CallSid"]).filter(
        Q(ended_at__isnull=False) | Q(transfer_state=Call.TransferState.DIALING)).first())
    assert row.end_reason == ("" if action == "transfer" else end_reason)
    dtmf = wait_for(lambda: CallEvent.objects.filter(call=row, kind="dtmf").first())
    assert (dtmf.text, dtmf.data) == (key, {"action": action})
    if action == "transfer":
        assert f"pressed {key}" in row.transfer_summary and "+1" not in row.transfer_summary
    assert (await asyncio.to_thread(stream_ended_twiml, bridge, params)).verbs[: len(after)] == after


async def test_keypad_menu_repeat_key_has_the_agent_say_its_last_line_again(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig, engine: str
) -> None:
    agent.dtmf_actions = {"9": "repeat"}
    agent.save()
    fresh_sim.script = Script(turns=[Reply("We open at eight.", audio_ms=400), Reply("We open at eight.", 400)])
    params, call = await open_stream(bridge)
    async with call:
        await call.wait_for_reply(since_bytes=0, start_timeout=10, quiet_ms=300, finish_timeout=10)
        row = Call.objects.get(twilio_call_sid=params["CallSid"])
        if engine == "realtime":  # GPT-Live finishes the agent's line only when someone speaks next
            wait_for(lambda: CallEvent.objects.filter(call=row, kind="agent").exists())
        await call.send_dtmf("9")
        session = fresh_sim.sessions[-1]
        note = wait_for(lambda: next((e for e in session.received if "hear your last sentence again"
                                      in json.dumps(e)), None))
        if engine == "realtime":
            assert "We open at eight." in json.dumps(note)
            await call.wait_for_reply(since_bytes=8 * 400, start_timeout=10, quiet_ms=300, finish_timeout=10)
    assert fresh_sim.errors == []
    dtmf = wait_for(lambda: CallEvent.objects.filter(call=row, kind="dtmf").first())
    assert dtmf.data == {"action": "repeat"}


async def test_the_transfer_tool_is_a_warm_transfer_with_the_summary_stored_and_recorded(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig, engine: str
) -> None:
    fresh_sim.script = Script(
        turns=[Reply("Hello.", audio_ms=300), ToolCall("transfer_call", {"reason": "a question about a bill"}),
               Reply("I am connecting you to a colleague now.", audio_ms=700)],
        transcripts=["I was charged twice, can I talk to someone?"])
    params, call = await open_stream(bridge)
    async with call:
        await call.wait_for_reply(since_bytes=0, start_timeout=10, quiet_ms=300, finish_timeout=10)
        await call.say(audio.speech_like(700) + audio.silence(900))
        assert await call.wait_closed(15)
    assert fresh_sim.errors == []
    row = wait_for(lambda: Call.objects.filter(twilio_call_sid=params["CallSid"],
                                               transfer_state=Call.TransferState.DIALING).first())
    assert row.is_live and row.end_reason == ""  # the caller waits on the <Dial>: the call is not over
    assert "Reason: a question about a bill." in row.transfer_summary
    if engine == "realtime":  # the tool's response held no words: the bridge asked for a connecting line
        assert bytes(call.result.agent_audio).endswith(agent_audio(700, fresh_sim.pacing.pattern))
        assert "“I was charged twice, can I talk to someone?”" in row.transfer_summary
    status = wait_for(lambda: CallEvent.objects.filter(call=row, kind="status",
                                                       text__startswith="transferring").first())
    assert status.data["transfer"]["summary"] == row.transfer_summary and status.data["transfer"]["mode"] == "warm"
    after = await asyncio.to_thread(stream_ended_twiml, bridge, params)
    assert "Dial" in after.verbs
    # The person answering hears the summary the bridge stored (Twilio fetches the whisper then).
    status, body = await asyncio.to_thread(
        signed_webhook_post, bridge.http, f"/twilio/whisper?call={params['CallSid']}",
        {"CallSid": "CA" + "5" * 32, "AccountSid": params["AccountSid"], "CallStatus": "in-progress"}, TWILIO_TOKEN)
    assert status == 200 and parse_twiml(body).says == [f"{row.transfer_summary} Connecting you now."]


async def test_a_transfer_nobody_answers_brings_the_caller_back_to_the_agent_on_a_new_stream(
    bridge: ServerProcess, fresh_sim: RealtimeSimulator, agent: AgentConfig, engine: str, media_root: Path
) -> None:
    """The whole fallback through the real bridge and webhooks: the agent transfers, the stream ends, Twilio
    <Dial>s, nobody answers, the Dial action answers with a new <Connect><Stream> (a fresh token), the agent is
    told why and says it is back, the caller hangs up later, and the call is finalised once, with one recording."""
    agent.record_calls = True
    agent.save()
    fresh_sim.script = Script(
        turns=[Reply("Hello.", audio_ms=300), ToolCall("transfer_call", {"reason": "a question about a bill"}),
               Reply("I am connecting you to a colleague now.", audio_ms=500)],
        transcripts=["Can I talk to someone about my bill?"])
    params, first = await open_stream(bridge)
    async with first:
        await first.wait_for_reply(since_bytes=0, start_timeout=10, quiet_ms=300, finish_timeout=10)
        await first.say(audio.speech_like(700) + audio.silence(900))
        assert await first.wait_closed(15), "the bridge did not end the stream for the transfer"
    sid = params["CallSid"]
    wait_for(lambda: Call.objects.filter(twilio_call_sid=sid, transfer_state=Call.TransferState.DIALING).exists())
    first_recording = recorded(params).recording.name
    assert "Dial" in (await asyncio.to_thread(stream_ended_twiml, bridge, params)).verbs
    sessions_before = fresh_sim.total_sessions
    status, body = await asyncio.to_thread(signed_webhook_post, bridge.http, "/twilio/transfer-ended", {
        **params, "CallStatus": "in-progress", "DialCallStatus": "no-answer", "DialCallDuration": "0"}, TWILIO_TOKEN)
    back = parse_twiml(body)
    assert status == 200 and back.kind == "stream" and back.says == []
    assert back.parameters["token"] != first.parameters["token"]  # a fresh token (signed by the bridge's key)
    assert Call.objects.get(twilio_call_sid=sid).is_live
    # The first stream's token, still within its lifetime, cannot claim the stream the call is waiting for.
    stale = MediaStreamCall(back.stream_url, parameters=first.parameters, auth_token=TWILIO_TOKEN,
                            account_sid=params["AccountSid"], call_sid=sid, pace=False)
    async with stale:
        assert await stale.wait_closed(10)
    assert stale.result.close_code == 4401
    assert Call.objects.get(twilio_call_sid=sid).transfer_state == Call.TransferState.RETURNING

    fresh_sim.script = Script(turns=[Reply(BACK_LINE, audio_ms=800), Reply("I can take a message.", audio_ms=600)])
    second = MediaStreamCall(back.stream_url, parameters=back.parameters, auth_token=TWILIO_TOKEN,
                             account_sid=params["AccountSid"], call_sid=sid)
    async with second:
        await second.wait_for_reply(since_bytes=0, start_timeout=10, quiet_ms=300, finish_timeout=10)
        assert bytes(second.result.agent_audio) == agent_audio(800, fresh_sim.pacing.pattern)  # the agent is back
        row = Call.objects.get(twilio_call_sid=sid)
        assert row.is_live and row.stream_count == 2 and row.transfer_state == Call.TransferState.RETURNED
        # The same token again (a replay) is refused: the call's second stream is claimed once.
        replay = MediaStreamCall(back.stream_url, parameters=back.parameters, auth_token=TWILIO_TOKEN,
                                 account_sid=params["AccountSid"], call_sid=sid, pace=False)
        async with replay:
            assert await replay.wait_closed(10)
        assert replay.result.close_code == 4401
    assert fresh_sim.errors == []
    assert fresh_sim.total_sessions == sessions_before + 1
    told = json.dumps(fresh_sim.sessions[-1].received)
    assert "did not go through: nobody answered" in told and "take a message" in told
    if engine == "realtime":  # the conversation so far, as history items
        assert "Can I talk to someone about my bill?" in told and "I am connecting you" in told

    row = wait_for(lambda: Call.objects.filter(twilio_call_sid=sid, ended_at__isnull=False).first())
    assert row.status == Call.Status.COMPLETED and row.end_reason == Call.EndReason.CALLER_HANGUP
    assert row.transfer_state == Call.TransferState.RETURNED and row.transfer_dial_status == "no-answer"
    assert row.agent_seconds is not None and row.agent_seconds <= row.duration_s
    assert row.cost_usd == services.call_cost_usd(row)
    events = wait_for(lambda: list(CallEvent.objects.filter(call=row).order_by("seq"))
                      if CallEvent.objects.filter(call=row, text__startswith="call ended").exists() else None)
    texts = [e.text for e in events if e.kind == "status"]
    assert texts.count("call ended: caller_hangup") == 1 and not any(t == "call ended: transferred" for t in texts)
    assert texts.index("the agent's stream ended: the caller is being transferred") \
        < texts.index("Transfer not answered (nobody answered): back to the agent") \
        < texts.index("back with the agent: the transfer was not answered (nobody answered)")
    # One clock for the call: the second stream's events come after everything before it.
    before = [e.t_ms for e in events if e.seq < services.stream_seq_base(2)]
    after = [e.t_ms for e in events if e.seq > services.stream_seq_base(2)]
    assert after == sorted(after) and max(before) <= min(after), [(e.seq, e.t_ms) for e in events]
    back_status = next(e for e in events if e.text.startswith("back with the agent"))
    assert back_status.seq > services.stream_seq_base(2)
    # One recording: the second stream joined at its place on the call's timeline.
    joined = wait_for(lambda: Call.objects.filter(twilio_call_sid=sid).exclude(
        recording__in=["", first_recording]).first(), timeout_s=15).recording.name
    assert not (media_root / first_recording).exists()
    _, right = stereo(media_root / joined)
    assert len(right) >= 8 * back_status.t_ms  # the first stream and the ringing, then the second stream
    assert onset(right, 8 * back_status.t_ms) > 8 * back_status.t_ms  # the agent's "I'm back" on the timeline
