"""`bridge.ws_frames.text_frame`, the frames the bridge writes to Twilio's socket itself, read back by websockets' own
client-side parser: the same text, one unfragmented frame, at every length encoding (7-bit, 16-bit, 64-bit)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from bridge.ws_frames import FrameSplitter, MaskKeys, text_frame


def read_back(data: bytes) -> list[Frame]:
    """Parse frames as a client does (unmasked, from a server) until the bytes are used up."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        with pytest.raises(StopIteration) as parsed:
            next(parser)  # a frame cut short would yield, waiting for more data
        frames.append(parsed.value.value)
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 300, 65535, 65536, 70000])
def test_every_length_encoding_reads_back_as_one_text_frame(size: int) -> None:
    text = "é" * (size // 2) + "a" * (size % 2)  # multi-byte UTF-8: the header counts bytes, not characters
    [frame] = read_back(text_frame(text.encode()))
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.data.decode() == text


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_a_client_frame_is_masked_and_reads_back_as_its_text(size: int) -> None:
    text = "x" * size
    data = text_frame(text.encode(), MaskKeys().next())
    assert data[1] & 0x80  # the mask bit
    reader = StreamReader()
    reader.feed_data(data)
    with pytest.raises(StopIteration) as parsed:
        next(Frame.parse(reader.read_exact, mask=True))
    assert parsed.value.value.opcode is Opcode.TEXT and parsed.value.value.data.decode() == text


def test_mask_keys_are_four_bytes_and_vary() -> None:
    keys = MaskKeys()
    drawn = [keys.next() for _ in range(3000)]  # past one 4 KiB draw
    assert {len(key) for key in drawn} == {4} and len(set(drawn)) > 2900


@given(st.lists(st.text(max_size=400), min_size=1, max_size=5))
def test_frames_written_back_to_back_read_back_in_order(texts: list[str]) -> None:
    frames = read_back(b"".join(text_frame(text.encode()) for text in texts))
    assert [frame.data.decode() for frame in frames] == texts


# --- FrameSplitter: a socket's bytes, cut anywhere, split between text messages and the library ----------------
FRAMES = st.one_of(
    st.text(max_size=300).map(lambda text: ("text", Frame(Opcode.TEXT, text.encode()))),
    st.binary(max_size=20).map(lambda data: ("library", Frame(Opcode.PING, data))),
    st.binary(max_size=50).map(lambda data: ("library", Frame(Opcode.BINARY, data))),
    st.text(min_size=2, max_size=50).map(lambda text: ("library", Frame(Opcode.TEXT, text.encode(), fin=False))),
)


def cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[start:end] for start, end in itertools.pairwise(points)]


@given(st.lists(FRAMES, min_size=1, max_size=12), st.booleans(), st.lists(st.integers(min_value=0), max_size=30))
def test_frames_cut_anywhere_come_out_whole_and_in_order(frames, masked: bool, cuts: list[int]) -> None:
    serialized = [(kind, frame.data, frame.serialize(mask=masked)) for kind, frame in frames]  # one mask key each
    splitter = FrameSplitter(masked=masked, max_size=1 << 20)
    splitter.open()
    out: list[tuple[str, bytes]] = []
    for chunk in cut(b"".join(data for _, _, data in serialized), cuts):
        for payload, frame in splitter.split(chunk):
            out.append(("text", payload) if payload is not None else ("library", frame))
    assert out == [(kind, payload if kind == "text" else data) for kind, payload, data in serialized]


def test_frames_masked_the_wrong_way_go_to_the_library() -> None:
    splitter = FrameSplitter(masked=True, max_size=1 << 20)
    splitter.open()
    unmasked = Frame(Opcode.TEXT, b"from a client, unmasked").serialize(mask=False)
    assert list(splitter.split(unmasked)) == [(None, unmasked)]


def test_after_hand_over_the_library_reads_the_rest_in_order() -> None:
    splitter = FrameSplitter(masked=False, max_size=1 << 20)
    splitter.open()
    first = Frame(Opcode.TEXT, b"one").serialize(mask=False)
    close = Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=False)
    after = Frame(Opcode.TEXT, b"two").serialize(mask=False)
    out = []
    for payload, frame in splitter.split(first + close + after[:3]):
        out.append((payload, frame))
        if payload is None:
            splitter.hand_over()  # the library's state says: closing
    assert out == [(b"one", first), (None, close), (None, after[:3])]
    assert list(splitter.split(after[3:])) == [(None, after[3:])]


def test_a_frame_over_the_limit_goes_to_the_library_with_all_that_follows() -> None:
    splitter = FrameSplitter(masked=False, max_size=100)
    splitter.open()
    big = Frame(Opcode.TEXT, b"x" * 101).serialize(mask=False)
    assert list(splitter.split(big[:4])) == [(None, big[:4])]  # the header alone says it is too big
    assert list(splitter.split(big[4:])) == [(None, big[4:])]


def test_before_it_is_open_everything_is_the_librarys() -> None:
    splitter = FrameSplitter(masked=True, max_size=100)
    assert list(splitter.split(b"GET / HTTP/1.1\r\n\r\n")) == [(None, b"GET / HTTP/1.1\r\n\r\n")]
