"""Barge-in arithmetic: how much of the agent's audio has the caller actually heard? Pure: no I/O, no clock.

The model generates audio faster than real time, so the bridge forwards it to Twilio well ahead of playback.
When the caller talks over the agent, the model must be told where the caller stopped hearing it
(`conversation.item.truncate` with `audio_end_ms`), or it believes it said things nobody heard.

Twilio tells us what has played through marks: the bridge sends a `mark` between audio chunks, and Twilio
echoes it once everything before it has played (and echoes any still-pending marks when we send `clear`).
Bytes confirmed by echoed marks ÷ 8 (μ-law at 8 kHz) is what the caller heard; no wall clock is involved.

A mark per chunk would cost a message each way per 20 ms frame, as many as the audio itself. So a mark goes out
only once about `MARK_EVERY_MS` of audio is unmarked: it is sent *before* the chunk that would take the unmarked
audio past `MARK_EVERY_MS`, so two marks are never more than `MARK_EVERY_MS` apart (or one chunk, for a chunk
longer than that), and the truncate point lags what the caller heard by at most that. A new item's first chunk
and the end of a response (`flush`) mark whatever is unmarked, so "playback finished" is still known.

Usage, one `PlaybackTracker` per call:

    name = tracker.on_audio_sent(item_id, nbytes)   # before forwarding a chunk; if a name, send that mark first
    name = tracker.flush()                          # the response's audio is complete; if a name, send that mark
    tracker.on_mark(name)                           # Twilio echoed a mark
    point = tracker.on_barge_in()                   # caller started speaking
    if point: send Twilio `clear`, then truncate(point.item_id, point.truncate_point_ms)
    tracker.is_playing                              # audio sent that Twilio has not confirmed as played

Mark names are `p<sequence>` with one sequence per tracker that never restarts, so a mark from before a
barge-in or from an earlier item can never be mistaken for a current one. Marks echo in order, so an echo
also confirms every older pending mark. Unknown, malformed or stale names are ignored.
Each call is O(1) (amortised for `on_mark`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from bridge.twilio_media import MULAW_BYTES_PER_MS

__all__ = ["MARK_EVERY_MS", "MARK_PREFIX", "PlaybackTracker", "TruncatePoint"]

MARK_PREFIX = "p"
# The truncate precision, traded against messages: 10 marks/s each way instead of 50 with 20 ms deltas (docs/perf.md
# has the measurement). Keep it well under live_events.CLEAR_QUEUED_MS: Live's last, unmarked chunk reads as queued.
MARK_EVERY_MS = 100


@dataclass(slots=True, frozen=True)
class TruncatePoint:
    """Where to truncate an interrupted assistant item: the caller heard `truncate_point_ms` of it."""

    item_id: str
    truncate_point_ms: int


class PlaybackTracker:
    """Tracks audio forwarded to Twilio for the agent's current item and what Twilio confirmed as played."""

    __slots__ = ("_item_id", "_mark_every_bytes", "_pending", "_played_bytes", "_sent_bytes", "_seq", "_unmarked")

    def __init__(self, mark_every_ms: int = MARK_EVERY_MS) -> None:
        self._mark_every_bytes = mark_every_ms * MULAW_BYTES_PER_MS
        self._seq = 0  # never reset: keeps names from before a reset distinguishable
        self._item_id: str | None = None
        self._sent_bytes = 0  # bytes of the current item forwarded to Twilio
        self._played_bytes = 0  # bytes of the current item confirmed played by an echoed mark
        self._unmarked = 0  # bytes of the current item sent after its last mark
        # Marks sent and not yet echoed, oldest first: (sequence, item_id, cumulative bytes of that item).
        self._pending: deque[tuple[int, str, int]] = deque()

    @property
    def is_playing(self) -> bool:
        """True while some forwarded audio has not been confirmed played."""
        return bool(self._pending) or self._unmarked > 0

    @property
    def queued_bytes(self) -> int:
        """Audio of the current item forwarded to Twilio and not yet confirmed played."""
        return self._sent_bytes - self._played_bytes if self._pending or self._unmarked else 0

    @property
    def item_id(self) -> str | None:
        """The assistant item whose audio was forwarded last."""
        return self._item_id

    def on_audio_sent(self, item_id: str, nbytes: int) -> str | None:
        """Record `nbytes` of `item_id` about to be forwarded to Twilio; return the name of a mark to send just
        before it (it closes the audio already sent), or None."""
        mark = None
        if item_id != self._item_id:
            # A new item: the previous one's audio is marked off; its pending marks stay queued (its audio is
            # still ahead in Twilio's buffer) but count only towards playback, not towards this item.
            if self._unmarked:
                mark = self._mark()
            self._item_id = item_id
            self._sent_bytes = 0
            self._played_bytes = 0
        elif self._unmarked and self._unmarked + nbytes > self._mark_every_bytes:
            mark = self._mark()
        self._sent_bytes += nbytes
        self._unmarked += nbytes
        return mark

    def flush(self) -> str | None:
        """The current response's audio is all sent: the name of a mark to send after it, or None if all of it
        is marked already. Its echo says the response finished playing."""
        return self._mark() if self._unmarked else None

    def _mark(self) -> str:
        self._seq += 1
        self._pending.append((self._seq, self._item_id, self._sent_bytes))  # type: ignore[arg-type]
        self._unmarked = 0
        return MARK_PREFIX + str(self._seq)

    def on_mark(self, name: str) -> None:
        """Twilio echoed mark `name`: the audio before it has played. Unknown or stale names are ignored."""
        pending = self._pending
        if not pending or not name.startswith(MARK_PREFIX):
            return
        digits = name[len(MARK_PREFIX):]
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
            return
        seq = int(digits)
        if seq < pending[0][0] or seq > pending[-1][0]:
            return  # before the oldest pending mark (already confirmed, or cleared by a reset) or never sent
        # Marks play in order: this echo confirms it and every older pending one.
        while pending and pending[0][0] <= seq:
            _, item_id, cumulative = pending.popleft()
            if item_id == self._item_id:
                self._played_bytes = cumulative

    def on_barge_in(self) -> TruncatePoint | None:
        """The caller started speaking: where to truncate the current item, or None if nothing is playing.

        Then resets: marks still pending become stale (the consumer sends Twilio `clear`)."""
        point = None
        if self.is_playing and self._item_id is not None:
            heard = min(self._played_bytes, self._sent_bytes)  # never beyond the audio the item had
            point = TruncatePoint(self._item_id, heard // MULAW_BYTES_PER_MS)
        self.reset()
        return point

    def reset(self) -> None:
        """Forget all playback state; later echoes of earlier marks are ignored."""
        self._item_id = None
        self._sent_bytes = 0
        self._played_bytes = 0
        self._unmarked = 0
        self._pending.clear()
