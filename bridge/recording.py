"""A call's recording: both legs kept as they pass, placed on the call's timeline. Pure: no I/O, no clock.

The audio path only appends references to the base64 strings it already holds; nothing is decoded until the
call is over and `write_wav()` runs (in a thread, off the event loop):

    recorder = CallRecorder()
    recorder.caller(payload_b64, timestamp_ms)          # each Twilio media frame (its own `timestamp`)
    recorder.agent(delta_b64, item_id, now_ms)          # each agent chunk forwarded to Twilio
    recorder.barge_in(item_id, heard_ms, now_ms)        # Twilio was told to `clear`: the rest was never heard
    recorder.write_wav(file, end_ms)                    # after the call: stereo 8 kHz 16-bit PCM WAV

The timeline is milliseconds since the stream started (positions are kept in samples, 8 per ms). The caller's
frames sit at Twilio's media `timestamp`. The agent's audio plays at Twilio back to back: a chunk starts when
the one before it ends, or when it is sent if Twilio's buffer had run dry. On barge-in, Twilio drops what it
had not played; the playback tracker's truncate point (what the marks confirm the caller heard of the item)
says where the agent's channel stops, so audio the caller never heard is not in the recording.

Memory is bounded by `max_ms` of timeline (default 30 minutes): each leg holds at most that much audio as the
base64 strings received, ~1.5 MB per minute of call for both legs (measured with tracemalloc), so ~45 MB at most.
Audio past it is not kept: the WAV holds the call's first `max_ms` and `truncated` says so. Writing the WAV
adds the two legs' μ-law (~1 MB per minute) and one block at a time.
"""

from __future__ import annotations

import base64
import itertools
import wave
from dataclasses import dataclass, field
from typing import BinaryIO

from bridge.twilio_media import MULAW_BYTES_PER_MS, b64_audio_len

__all__ = ["DEFAULT_MAX_MS", "CallRecorder", "ulaw_to_pcm16"]

DEFAULT_MAX_MS = 30 * 60 * 1000
SAMPLE_RATE = 8000
WAV_BLOCK = 10 * SAMPLE_RATE  # samples decoded at a time when the WAV is written
ULAW_SILENCE = 0xFF  # μ-law for linear 0


def _ulaw_to_linear(code: int) -> int:
    """G.711 μ-law decoding of one byte (ITU-T G.711)."""
    code = ~code & 0xFF
    magnitude = ((((code & 0x0F) << 3) + 0x84) << ((code >> 4) & 0x07)) - 0x84
    return -magnitude if code & 0x80 else magnitude


# Two byte-translation tables (low and high byte of the little-endian 16-bit sample): decoding a whole channel
# is two `bytes.translate` calls instead of a Python loop over samples.
_LOW = bytes(_ulaw_to_linear(c) & 0xFF for c in range(256))
_HIGH = bytes((_ulaw_to_linear(c) >> 8) & 0xFF for c in range(256))


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    """μ-law bytes → little-endian signed 16-bit PCM."""
    out = bytearray(2 * len(ulaw))
    out[0::2] = ulaw.translate(_LOW)
    out[1::2] = ulaw.translate(_HIGH)
    return bytes(out)


@dataclass(slots=True)
class _AgentRun:
    """Agent audio of one item that plays back to back from `start` (samples); `offset`: where in the item."""

    start: int
    item_id: str
    offset: int
    chunks: list[str] = field(default_factory=list)
    length: int = 0  # samples; shortened by a barge-in

    @property
    def end(self) -> int:
        return self.start + self.length


class CallRecorder:
    __slots__ = ("_agent_end", "_agent_runs", "_caller_frames", "_caller_next", "_caller_runs", "_item_samples",
                 "_max_ms", "_max_samples", "truncated")

    def __init__(self, max_ms: int = DEFAULT_MAX_MS) -> None:
        self._max_ms = max_ms
        self._max_samples = max_ms * MULAW_BYTES_PER_MS
        self._caller_frames: list[str] = []
        self._caller_runs: list[tuple[int, int]] = []  # (start sample, index of its first frame): gaps start runs
        self._caller_next = -1  # the timestamp (ms) a contiguous next frame would have
        self._agent_runs: list[_AgentRun] = []
        self._agent_end = 0  # where Twilio's playback queue ends (samples)
        self._item_samples: dict[str, int] = {}  # samples forwarded per item, for the offset of the next run
        self.truncated = False

    # --- the audio path ------------------------------------------------------------------------------------
    def caller(self, payload_b64: str, timestamp_ms: int) -> None:
        """A caller frame at Twilio's media `timestamp` (ms since the stream started)."""
        if timestamp_ms >= self._max_ms:
            self.truncated = True
            return
        if timestamp_ms != self._caller_next:  # the first frame, or a gap (Twilio skipped or reordered)
            if timestamp_ms < 0:
                return
            self._caller_runs.append((timestamp_ms * MULAW_BYTES_PER_MS, len(self._caller_frames)))
        self._caller_frames.append(payload_b64)
        self._caller_next = timestamp_ms + b64_audio_len(payload_b64) // MULAW_BYTES_PER_MS

    def agent(self, delta_b64: str, item_id: str, now_ms: int) -> None:
        """An agent chunk forwarded to Twilio at `now_ms`: it plays after what is queued there, or now."""
        samples = b64_audio_len(delta_b64)
        now = now_ms * MULAW_BYTES_PER_MS
        start = max(now, self._agent_end)
        if start + samples > self._max_samples:
            self.truncated = True
            return
        runs = self._agent_runs
        if runs and runs[-1].item_id == item_id and runs[-1].end == start:
            run = runs[-1]
        else:
            run = _AgentRun(start, item_id, self._item_samples.get(item_id, 0))
            runs.append(run)
        run.chunks.append(delta_b64)
        run.length += samples
        self._agent_end = run.end
        self._item_samples[item_id] = self._item_samples.get(item_id, 0) + samples

    def barge_in(self, item_id: str, heard_ms: int, now_ms: int) -> None:
        """Twilio dropped its queue: keep `heard_ms` of `item_id` (the truncate point) and nothing queued after.
        An item without recorded audio is cut where the caller interrupted (`now_ms`)."""
        heard = heard_ms * MULAW_BYTES_PER_MS
        cut = now_ms * MULAW_BYTES_PER_MS
        for run in self._agent_runs:
            if run.item_id == item_id and run.offset <= heard:
                cut = run.start + min(heard - run.offset, run.length)
        kept: list[_AgentRun] = []
        for run in self._agent_runs:
            if run.start < cut:
                run.length = min(run.length, cut - run.start)
                kept.append(run)
        self._agent_runs = kept
        self._agent_end = min(self._agent_end, cut)

    # --- after the call ------------------------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        return not self._caller_frames and not self._agent_runs

    def channels(self, end_ms: int) -> tuple[bytes, bytes]:
        """The caller's and the agent's μ-law, each `end_ms` long (silence where nobody spoke)."""
        length = min(end_ms * MULAW_BYTES_PER_MS, self._max_samples)
        caller = bytearray([ULAW_SILENCE]) * length
        bounds = [*self._caller_runs, (0, len(self._caller_frames))]
        for (start, first), (_, after) in itertools.pairwise(bounds):
            _place(caller, start, _decode(self._caller_frames[first:after]))
        agent = bytearray([ULAW_SILENCE]) * length
        for run in self._agent_runs:
            _place(agent, run.start, _decode(run.chunks)[: run.length])
        return bytes(caller), bytes(agent)

    def write_wav(self, out: BinaryIO, end_ms: int) -> None:
        """Write one stereo 8 kHz 16-bit PCM WAV, `end_ms` long, to `out` (a file: it is written in blocks, so a
        long call never has its whole decoded audio in memory): left the caller, right the agent."""
        caller, agent = self.channels(end_ms)
        with wave.open(out, "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.setnframes(len(caller))
            for start in range(0, len(caller), WAV_BLOCK):
                left = ulaw_to_pcm16(caller[start:start + WAV_BLOCK])
                right = ulaw_to_pcm16(agent[start:start + WAV_BLOCK])
                frames = bytearray(2 * len(left))
                frames[0::4], frames[1::4] = left[0::2], left[1::2]
                frames[2::4], frames[3::4] = right[0::2], right[1::2]
                wav.writeframesraw(frames)


def _decode(chunks: list[str]) -> bytes:
    """Each chunk on its own: a 20 ms frame's base64 ends in padding, so the strings cannot be joined first."""
    return b"".join(map(base64.b64decode, chunks))


def _place(channel: bytearray, start: int, audio: bytes) -> None:
    """Write `audio` into `channel` at `start`, clipped to the channel's length."""
    audio = audio[: max(0, len(channel) - start)]
    channel[start:start + len(audio)] = audio
