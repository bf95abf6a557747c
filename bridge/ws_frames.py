"""RFC 6455 framing for the audio path's one common case, with no I/O: where the frame at a position of a byte
buffer ends, and its text when it is a whole, unfragmented text frame.

Both of the bridge's sockets read their frames with this and hand every other frame (pings, pongs, the close,
fragments, binary, anything malformed) whole to the `websockets` library, which owns the protocol's rules; a frame
declared bigger than the size limit goes to the library too, which refuses it. This skips, per audio frame, the
library's generator-based parser, its frame objects and its event list.
"""

from __future__ import annotations

import enum

from websockets.frames import apply_mask  # websockets' C speedup when built, its Python version otherwise

NEED_MORE = -1  # the frame's bytes have not all arrived
TOO_BIG = -2  # the frame declares more than the size limit

_FIN_TEXT = 0x81  # FIN set, no RSV bits, opcode 1 (text)


def scan(buf: bytes, pos: int, masked: bool, max_size: int) -> tuple[int, bytes | None]:
    """The frame that starts at `buf[pos]`: `(end, payload)`, the payload unmasked, for a whole final text frame
    with no RSV bits and masked as expected (`masked`: frames from a client are, from a server are not);
    `(end, None)` for any other complete frame; `(NEED_MORE, None)` or `(TOO_BIG, None)`."""
    size = len(buf)
    if size - pos < 2:
        return NEED_MORE, None
    first, second = buf[pos], buf[pos + 1]
    length = second & 0x7F
    start = pos + 2
    if length == 126:
        if size - start < 2:
            return NEED_MORE, None
        length = (buf[start] << 8) | buf[start + 1]
        start += 2
    elif length == 127:
        if size - start < 8:
            return NEED_MORE, None
        length = int.from_bytes(buf[start:start + 8], "big")
        start += 8
    if length > max_size:
        return TOO_BIG, None
    has_mask = second & 0x80
    end = start + (4 if has_mask else 0) + length
    if end > size:
        return NEED_MORE, None
    if first != _FIN_TEXT or bool(has_mask) is not masked:
        return end, None
    if has_mask:
        return end, apply_mask(buf[start + 4:end], buf[start:start + 4])
    return end, buf[start:end]


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 5.2: a server's frames are not masked)."""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 65536:
        return bytes((_FIN_TEXT, 126)) + size.to_bytes(2, "big") + payload
    return bytes((_FIN_TEXT, 127)) + size.to_bytes(8, "big") + payload


class Reader(enum.Enum):
    """Who reads a socket's incoming bytes."""

    HANDSHAKE = "handshake"  # the library, until the connection is open
    SCANNER = "scanner"  # `scan`, handing the library every frame it does not take
    LIBRARY = "library"  # the library alone: after a frame too big, a failure, or once the close has begun
