"""RFC 6455 framing for the audio path's one common case, with no I/O: where the frame at a position of a byte
buffer ends, and its text when it is a whole, unfragmented text frame.

Both of the bridge's sockets read their frames with this and hand every other frame (pings, pongs, the close,
fragments, binary, anything malformed) whole to the `websockets` library, which owns the protocol's rules; a frame
declared bigger than the size limit goes to the library too, which refuses it. This skips, per audio frame, the
library's generator-based parser, its frame objects and its event list.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator

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


def text_frame(payload: bytes, mask: bytes | None = None) -> bytes:
    """One unfragmented text frame: unmasked from a server, masked with the 4-byte `mask` from a client (RFC 6455
    5.2, 5.3)."""
    size = len(payload)
    bit = 0x80 if mask is not None else 0
    if size < 126:
        header = bytes((_FIN_TEXT, bit | size))
    elif size < 65536:
        header = bytes((_FIN_TEXT, bit | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((_FIN_TEXT, bit | 127)) + size.to_bytes(8, "big")
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


class MaskKeys:
    """A client's masking keys (RFC 6455 5.3: from a strong source of entropy, unpredictable to the server), drawn
    from the OS 4 KiB at a time rather than with a system call per frame."""

    def __init__(self) -> None:
        self._keys = b""
        self._next = 0

    def next(self) -> bytes:
        if self._next >= len(self._keys):
            self._keys, self._next = os.urandom(4096), 0
        key = self._keys[self._next:self._next + 4]
        self._next += 4
        return key


class Reader(enum.Enum):
    """Who reads a socket's incoming bytes."""

    HANDSHAKE = "handshake"  # the library, until the connection is open
    SCANNER = "scanner"  # `scan`, handing the library every frame it does not take
    LIBRARY = "library"  # the library alone: after a frame too big, a failure, or once the close has begun


class FrameSplitter:
    """One socket's incoming bytes, split in order between whole text messages (the caller's) and what the library
    must read: one whole frame at a time while scanning, everything once handed over. No I/O: `split` yields
    `(payload, frame)`, the unmasked payload of a whole text frame (None for another frame) and the frame's bytes;
    the caller gives the library the frames it does not take and calls `hand_over` when the library's state says
    the scanner must stop (the close has begun, the connection failed); the rest then goes to the library."""

    def __init__(self, masked: bool, max_size: int) -> None:
        self.masked = masked  # frames from a client are masked, frames from a server are not
        self.max_size = max_size
        self.reader = Reader.HANDSHAKE
        self._pending = b""  # the start of a frame whose bytes have not all arrived

    def open(self) -> None:
        """The handshake is done and the library has no bytes of a frame: a frame starts with the next byte."""
        if self.reader is Reader.HANDSHAKE:
            self.reader = Reader.SCANNER

    def hand_over(self) -> None:
        self.reader = Reader.LIBRARY

    def split(self, data: bytes) -> Iterator[tuple[bytes | None, bytes]]:
        buf = self._pending + data if self._pending else data
        self._pending = b""
        if self.reader is not Reader.SCANNER:
            if buf:
                yield None, buf
            return
        pos, size = 0, len(buf)
        while pos < size:
            end, payload = scan(buf, pos, self.masked, self.max_size)
            if end == NEED_MORE:
                self._pending = buf[pos:]
                return
            if end == TOO_BIG:  # the library refuses it (1009 and a reason)
                self.reader = Reader.LIBRARY
                yield None, buf[pos:]
                return
            yield payload, buf[pos:end]
            pos = end
            if self.reader is not Reader.SCANNER:  # handed over meanwhile: the library reads the rest
                if pos < size:
                    yield None, buf[pos:]
                return
