"""The call recorder: both legs on the call's timeline, barge-in cuts, bounded memory, the stereo WAV."""

from __future__ import annotations

import base64
import io
import wave
from array import array

from bridge.playback import PlaybackTracker
from bridge.recording import CallRecorder, ulaw_to_pcm16
from calls.simulators import audio

TONE = audio.tone(440, 20, amplitude=0.5)  # one 20 ms frame of tone
QUIET = audio.silence(20)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wav_of(recorder: CallRecorder, end_ms: int) -> bytes:
    out = io.BytesIO()
    recorder.write_wav(out, end_ms)
    return out.getvalue()


def stereo(wav_bytes: bytes) -> tuple[array, array]:
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        samples = array("h", wav.readframes(wav.getnframes()))
    return samples[0::2], samples[1::2]


def loud(channel: array, start: int, end: int) -> bool:
    """Every 20 ms block in [start, end) carries sound."""
    return all(max(abs(s) for s in channel[i:i + 160]) > 1000 for i in range(start, end, 160))


def quiet(channel: array, start: int, end: int) -> bool:
    return all(abs(s) < 64 for s in channel[start:end])


def test_decoding_matches_g711():
    codes = bytes(range(256))
    assert array("h", ulaw_to_pcm16(codes)).tolist() == list(audio.ULAW_TO_LINEAR)


def test_a_caller_tone_at_one_second_lands_at_sample_8000_on_the_left():
    recorder = CallRecorder()
    for ms in range(0, 1000, 20):
        recorder.caller(b64(QUIET), ms)
    for ms in range(1000, 1500, 20):
        recorder.caller(b64(TONE), ms)
    left, right = stereo(wav_of(recorder, 2000))
    assert len(left) == 16000
    assert quiet(left, 0, 8000)
    assert left[8000:8160].tolist() == array("h", ulaw_to_pcm16(TONE)).tolist()
    assert loud(left, 8000, 12000) and quiet(left, 12000, 16000)
    assert quiet(right, 0, 16000)


def test_caller_frames_after_a_gap_keep_their_timestamps():
    recorder = CallRecorder()
    recorder.caller(b64(TONE), 0)
    recorder.caller(b64(TONE), 20)
    recorder.caller(b64(TONE), 500)  # Twilio skipped 460 ms
    left, _ = stereo(wav_of(recorder, 1000))
    assert loud(left, 0, 320) and quiet(left, 320, 4000) and loud(left, 4000, 4160) and quiet(left, 4160, 8000)


def test_agent_audio_plays_back_to_back_from_when_it_is_sent():
    recorder = CallRecorder()
    for _ in range(25):  # 500 ms of audio, all sent at once (the model is faster than real time)
        recorder.agent(b64(TONE), "item_a", now_ms=300)
    recorder.agent(b64(TONE), "item_b", now_ms=2000)  # Twilio's buffer ran dry: this one plays when sent
    left, right = stereo(wav_of(recorder, 2500))
    assert quiet(right, 0, 2400) and loud(right, 2400, 6400) and quiet(right, 6400, 16000)
    assert loud(right, 16000, 16160) and quiet(right, 16160, 20000)
    assert quiet(left, 0, 20000)


def test_agent_audio_cleared_by_barge_in_is_absent_on_the_right():
    recorder, tracker = CallRecorder(), PlaybackTracker()
    marks = []
    for _ in range(100):  # 2 s of the agent, all forwarded at t=1 s
        recorder.agent(b64(TONE), "item_a", now_ms=1000)
        marks.append(tracker.on_audio_sent("item_a", len(TONE)))
    tracker.on_mark([m for m in marks if m][4])  # a mark every 100 ms: the fifth says 500 ms played
    point = tracker.on_barge_in()
    assert point is not None and point.truncate_point_ms == 500
    recorder.barge_in(point.item_id, point.truncate_point_ms, now_ms=1550)
    recorder.agent(b64(TONE), "item_b", now_ms=2500)  # the next answer, after the caller spoke
    _, right = stereo(wav_of(recorder, 3000))
    assert quiet(right, 0, 8000)
    assert loud(right, 8000, 12000)  # the 500 ms heard, from t=1 s
    assert quiet(right, 12000, 20000)  # the 1.5 s cleared at Twilio: never heard, not recorded
    assert loud(right, 20000, 20160) and quiet(right, 20160, 24000)


def test_barge_in_with_the_item_spread_over_runs_cuts_inside_the_right_run():
    recorder = CallRecorder()
    for _ in range(10):  # 200 ms at t=0
        recorder.agent(b64(TONE), "item_a", now_ms=0)
    for _ in range(10):  # the model was slow: 200 ms more at t=500
        recorder.agent(b64(TONE), "item_a", now_ms=500)
    recorder.barge_in("item_a", 300, now_ms=700)  # 300 ms of the item heard: 100 ms into the second run
    _, right = stereo(wav_of(recorder, 1000))
    assert loud(right, 0, 1600) and quiet(right, 1600, 4000) and loud(right, 4000, 4800)
    assert quiet(right, 4800, 8000)


def test_barge_in_on_an_item_never_recorded_cuts_at_the_interruption():
    recorder = CallRecorder()
    for _ in range(50):
        recorder.agent(b64(TONE), "item_a", now_ms=0)
    recorder.barge_in("item_x", 0, now_ms=400)
    _, right = stereo(wav_of(recorder, 1000))
    assert loud(right, 0, 3200) and quiet(right, 3200, 8000)


def test_memory_is_bounded_by_the_cap_and_the_wav_says_how_long():
    recorder = CallRecorder(max_ms=1000)
    payload = b64(TONE)
    for ms in range(0, 5000, 20):
        recorder.caller(payload, ms)
    for _ in range(250):
        recorder.agent(payload, "item_a", now_ms=0)
    assert recorder.truncated
    assert len(recorder._caller_frames) == 50
    assert sum(len(run.chunks) for run in recorder._agent_runs) == 50
    left, right = stereo(wav_of(recorder, 5000))
    assert len(left) == 8000 and loud(left, 0, 8000) and loud(right, 0, 8000)


def test_audio_past_the_end_of_the_call_is_left_out():
    recorder = CallRecorder()
    for _ in range(100):  # 2 s queued; the caller hung up after 1 s
        recorder.agent(b64(TONE), "item_a", now_ms=0)
    _, right = stereo(wav_of(recorder, 1000))
    assert len(right) == 8000 and loud(right, 0, 8000)


def test_a_long_wav_is_written_in_blocks_and_stays_aligned():
    recorder = CallRecorder()
    recorder.caller(b64(TONE), 25_000)  # in the third 10 s block
    left, _ = stereo(wav_of(recorder, 30_000))
    assert len(left) == 240_000 and quiet(left, 0, 200_000) and loud(left, 200_000, 200_160)
    assert quiet(left, 200_160, 240_000)


def test_an_empty_recorder():
    recorder = CallRecorder()
    assert recorder.is_empty
    recorder.caller(b64(QUIET), 0)
    assert not recorder.is_empty
