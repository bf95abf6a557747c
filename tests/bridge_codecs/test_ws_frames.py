"""`bridge.ws_frames.text_frame`, the frames the bridge writes to Twilio's socket itself, read back by websockets' own
client-side parser: the same text, one unfragmented frame, at every length encoding (7-bit, 16-bit, 64-bit)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from bridge.ws_frames import text_frame


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


@given(st.lists(st.text(max_size=400), min_size=1, max_size=5))
def test_frames_written_back_to_back_read_back_in_order(texts: list[str]) -> None:
    frames = read_back(b"".join(text_frame(text.encode()) for text in texts))
    assert [frame.data.decode() for frame in frames] == texts
