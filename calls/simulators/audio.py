"""G.711 μ-law codec, WAV read/write and synthetic test audio, in pure Python.

`audioop` is gone in Python 3.13, so the codec is table-driven: decoding is a 256-entry table,
encoding a 65,536-entry table indexed by the unsigned 16-bit sample. Everything here speaks
"μ-law bytes at 8 kHz mono" (what Twilio and `audio/pcmu` carry) unless a name says otherwise.
"""

from __future__ import annotations

import math
import random
import struct
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

SAMPLE_RATE = 8000
FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz: the size Twilio sends
FRAME_MS = 20
BYTES_PER_MS = SAMPLE_RATE // 1000
ULAW_SILENCE = 0xFF  # encodes linear 0

_BIAS = 0x84
_CLIP = 32635

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


def _encode_sample(sample: int) -> int:
    """G.711 μ-law encoding of one signed 16-bit sample (reference algorithm, used to build the table)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, _CLIP) + _BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _decode_sample(code: int) -> int:
    code = ~code & 0xFF
    sign = code & 0x80
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return -magnitude if sign else magnitude


ULAW_TO_LINEAR: tuple[int, ...] = tuple(_decode_sample(c) for c in range(256))
# Indexed by sample & 0xFFFF so a signed sample maps straight to its slot.
_LINEAR_TO_ULAW: bytes = bytes(_encode_sample(u - 65536 if u >= 32768 else u) for u in range(65536))
# Squared linear value per code, so frame energy needs no decode pass.
_ULAW_SQUARED: tuple[int, ...] = tuple(v * v for v in ULAW_TO_LINEAR)


def encode_sample(sample: int) -> int:
    """μ-law code of one signed 16-bit sample."""
    return _LINEAR_TO_ULAW[sample & 0xFFFF]


def decode_sample(code: int) -> int:
    """Signed 16-bit value of one μ-law code."""
    return ULAW_TO_LINEAR[code]


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Little-endian signed 16-bit PCM → μ-law bytes."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    table = _LINEAR_TO_ULAW
    return bytes(table[s & 0xFFFF] for s in samples)


def samples_to_ulaw(samples: list[int] | array) -> bytes:
    """Signed 16-bit sample values (clipped) → μ-law bytes."""
    table = _LINEAR_TO_ULAW
    return bytes(table[max(-32768, min(32767, int(s))) & 0xFFFF] for s in samples)


def ulaw_to_samples(ulaw: bytes) -> array:
    """μ-law bytes → array of signed 16-bit samples."""
    return array("h", (ULAW_TO_LINEAR[b] for b in ulaw))


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    """μ-law bytes → little-endian signed 16-bit PCM."""
    samples = ulaw_to_samples(ulaw)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def ulaw_rms(ulaw: bytes) -> float:
    """Root-mean-square level (0..32124) of μ-law audio; 0.0 for empty input."""
    if not ulaw:
        return 0.0
    squared = _ULAW_SQUARED
    return math.sqrt(sum(squared[b] for b in ulaw) / len(ulaw))


def pcm16_rms(pcm: bytes) -> float:
    """Root-mean-square level of little-endian signed 16-bit PCM."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def frames(ulaw: bytes, frame_bytes: int = FRAME_BYTES) -> Iterator[bytes]:
    """Split audio into fixed frames; the last one is padded with μ-law silence."""
    for start in range(0, len(ulaw), frame_bytes):
        chunk = ulaw[start : start + frame_bytes]
        if len(chunk) < frame_bytes:
            chunk += bytes([ULAW_SILENCE]) * (frame_bytes - len(chunk))
        yield chunk


def duration_ms(ulaw: bytes) -> float:
    """Playing time of 8 kHz μ-law audio in milliseconds."""
    return len(ulaw) / BYTES_PER_MS


# --- resampling ---------------------------------------------------------------------------------


def resample(samples: list[int] | array, from_rate: int, to_rate: int = SAMPLE_RATE) -> list[int]:
    """Resample mono samples. Integer down-ratios average each group (a crude anti-alias box
    filter, good enough for 16k/24k/48k speech); other ratios interpolate linearly."""
    if from_rate == to_rate or not samples:
        return list(samples)
    if from_rate > to_rate and from_rate % to_rate == 0:
        factor = from_rate // to_rate
        usable = len(samples) - len(samples) % factor
        return [sum(samples[i : i + factor]) // factor for i in range(0, usable, factor)]
    out_len = int(len(samples) * to_rate / from_rate)
    step = from_rate / to_rate
    last = len(samples) - 1
    out = []
    for i in range(out_len):
        pos = i * step
        left = int(pos)
        frac = pos - left
        right = min(left + 1, last)
        out.append(round(samples[left] * (1 - frac) + samples[right] * frac))
    return out


# --- WAV ----------------------------------------------------------------------------------------


class WavError(ValueError):
    """The file is not a WAV this module can read."""


def _parse_wav(data: bytes) -> tuple[int, int, int, int, bytes]:
    """Return (format_tag, channels, sample_rate, bits_per_sample, data) of a RIFF/WAVE file."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    payload: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavError("fmt chunk too short")
            tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                # The real format tag is the first two bytes of the SubFormat GUID.
                (tag,) = struct.unpack_from("<H", body, 24)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            payload = body
        pos += 8 + size + (size & 1)  # chunks are word aligned
    if fmt is None or payload is None:
        raise WavError("missing fmt or data chunk")
    return (*fmt, payload)


def wav_bytes_to_ulaw(data: bytes) -> bytes:
    """Any supported WAV (PCM 8/16-bit or μ-law, mono or multichannel, any rate) → μ-law 8 kHz mono."""
    tag, channels, rate, bits, payload = _parse_wav(data)
    if channels < 1:
        raise WavError("no channels")
    if tag == WAVE_FORMAT_MULAW and bits == 8:
        if channels == 1 and rate == SAMPLE_RATE:
            return payload  # pass through untouched: no lossy decode/encode
        samples: list[int] | array = ulaw_to_samples(payload)
    elif tag == WAVE_FORMAT_PCM and bits == 16:
        samples = array("h")
        samples.frombytes(payload[: len(payload) - len(payload) % 2])
        if sys.byteorder == "big":
            samples.byteswap()
    elif tag == WAVE_FORMAT_PCM and bits == 8:
        samples = [(b - 128) << 8 for b in payload]  # 8-bit WAV is unsigned
    else:
        raise WavError(f"unsupported WAV format tag {tag:#x} with {bits} bits")
    if channels > 1:
        usable = len(samples) - len(samples) % channels
        samples = [sum(samples[i : i + channels]) // channels for i in range(0, usable, channels)]
    return samples_to_ulaw(resample(samples, rate, SAMPLE_RATE))


def read_wav_ulaw(path: str | Path) -> bytes:
    """Read a WAV file as μ-law 8 kHz mono bytes (see `wav_bytes_to_ulaw`)."""
    return wav_bytes_to_ulaw(Path(path).read_bytes())


def ulaw_to_wav_bytes(ulaw: bytes, encoding: str = "pcm16") -> bytes:
    """Wrap 8 kHz μ-law in a WAV container.

    encoding="pcm16" (default) decodes to 16-bit PCM, which every player opens.
    encoding="ulaw" stores the μ-law bytes as they are (format tag 7), byte-exact.
    """
    if encoding == "ulaw":
        # Non-PCM formats carry cbSize in fmt and a fact chunk with the sample count.
        fmt = struct.pack("<HHIIHHH", WAVE_FORMAT_MULAW, 1, SAMPLE_RATE, SAMPLE_RATE, 1, 8, 0)
        body = b"fmt " + struct.pack("<I", len(fmt)) + fmt
        body += b"fact" + struct.pack("<I", 4) + struct.pack("<I", len(ulaw))
        payload = ulaw
    elif encoding == "pcm16":
        fmt = struct.pack("<HHIIHH", WAVE_FORMAT_PCM, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        body = b"fmt " + struct.pack("<I", len(fmt)) + fmt
        payload = ulaw_to_pcm16(ulaw)
    else:
        raise ValueError(f"unknown encoding {encoding!r}; use 'pcm16' or 'ulaw'")
    body += b"data" + struct.pack("<I", len(payload)) + payload
    if len(payload) & 1:
        body += b"\x00"
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def write_wav_ulaw(path: str | Path, ulaw: bytes, encoding: str = "pcm16") -> Path:
    """Save 8 kHz μ-law audio as a WAV file (see `ulaw_to_wav_bytes`); returns the path."""
    target = Path(path)
    target.write_bytes(ulaw_to_wav_bytes(ulaw, encoding))
    return target


def pcm16_wav_bytes(samples: list[int], sample_rate: int) -> bytes:
    """A 16-bit mono PCM WAV at any rate (tests use it to feed the resampler)."""
    pcm = array("h", (max(-32768, min(32767, s)) for s in samples))
    if sys.byteorder == "big":
        pcm.byteswap()
    payload = pcm.tobytes()
    fmt = struct.pack("<HHIIHH", WAVE_FORMAT_PCM, 1, sample_rate, sample_rate * 2, 2, 16)
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


# --- synthetic audio ----------------------------------------------------------------------------


def silence(ms: int) -> bytes:
    """μ-law digital silence."""
    return bytes([ULAW_SILENCE]) * (ms * BYTES_PER_MS)


def tone_samples(freq_hz: float, ms: int, amplitude: float = 0.3, rate: int = SAMPLE_RATE) -> list[int]:
    """A sine tone as signed 16-bit samples at `rate`."""
    count = ms * rate // 1000
    peak = amplitude * 32767
    return [round(peak * math.sin(2 * math.pi * freq_hz * n / rate)) for n in range(count)]


def tone(freq_hz: float, ms: int, amplitude: float = 0.3) -> bytes:
    """A sine tone as μ-law 8 kHz."""
    return samples_to_ulaw(tone_samples(freq_hz, ms, amplitude))


def speech_like(ms: int, seed: int = 0, amplitude: float = 0.35) -> bytes:
    """Deterministic voice-ish audio: ~180 ms "syllables" of a harmonic tone with a pitch wobble and
    a rise/fall envelope, separated by short quiet gaps, so level stays well above a VAD threshold
    on average but is not a flat tone."""
    rng = random.Random(seed)
    out: list[int] = []
    total = ms * BYTES_PER_MS
    while len(out) < total:
        syllable = rng.randint(120, 240) * BYTES_PER_MS
        gap = rng.randint(20, 50) * BYTES_PER_MS
        pitch = rng.uniform(110, 220)
        for n in range(syllable):
            t = n / SAMPLE_RATE
            envelope = math.sin(math.pi * n / syllable)
            f0 = pitch * (1 + 0.05 * math.sin(2 * math.pi * 3 * t))
            value = (
                math.sin(2 * math.pi * f0 * t)
                + 0.5 * math.sin(2 * math.pi * 2 * f0 * t)
                + 0.25 * math.sin(2 * math.pi * 3 * f0 * t)
            )
            out.append(round(amplitude * 32767 * envelope * value / 1.75))
        out.extend(0 for _ in range(gap))
    return samples_to_ulaw(out[:total])


def utterance(
    speech_ms: int = 1200, *, lead_silence_ms: int = 0, trail_silence_ms: int = 0, seed: int = 0
) -> bytes:
    """Silence, speech-like audio, silence: one caller turn with no fixture file."""
    return silence(lead_silence_ms) + speech_like(speech_ms, seed=seed) + silence(trail_silence_ms)
