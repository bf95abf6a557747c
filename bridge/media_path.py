"""The `voiceops.media_path` ASGI extension: how the bridge's own server (`bridge.server`) lets the media consumer
skip the ASGI queue on the audio path.

With it, each text message of a WebSocket is handed to the app's handler as it arrives (when no message is queued
before it, so order is kept), and the app writes text messages at once, without awaiting. Declining a message
(the handler returns False) queues it for the app's `receive` as usual. Other ASGI servers do not offer it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

MEDIA_PATH_EXTENSION = "voiceops.media_path"

# How much unsent data may wait in a socket's buffer before audio is dropped (about 20 s of μ-law as base64 JSON):
# a peer that stops reading must not grow the bridge's memory without bound.
WRITE_BUFFER_LIMIT_BYTES = 256 * 1024

TextHandler = Callable[[str], bool]


class MediaPath(TypedDict):
    set_text_handler: Callable[[TextHandler | None], None]
    send_now: Callable[..., bool]  # (*texts: str) -> False when the socket is closing or its buffer is full
