"""Barge-in arithmetic: what the caller heard, from marks Twilio echoed; no clock involved."""

from __future__ import annotations

import itertools
import random

import pytest

from bridge.playback import MARK_EVERY_MS, PlaybackTracker, TruncatePoint

FRAME = 160  # 20 ms of μ-law


@pytest.fixture
def tracker() -> PlaybackTracker:
    """A mark between every two chunks: the bookkeeping tests below read one mark per chunk."""
    return PlaybackTracker(mark_every_ms=0)


def send(tracker: PlaybackTracker, item_id: str, chunks: int, nbytes: int = FRAME) -> list[str]:
    """Send `chunks` chunks then end the response; the marks, in the order they were sent."""
    marks = [tracker.on_audio_sent(item_id, nbytes) for _ in range(chunks)]
    return [m for m in [*marks, tracker.flush()] if m is not None]


def test_nothing_sent_nothing_to_truncate(tracker):
    assert not tracker.is_playing
    assert tracker.on_barge_in() is None


def test_marks_are_unique_and_encode_a_sequence(tracker):
    names = send(tracker, "item_a", 3) + send(tracker, "item_b", 2)
    assert names == ["p1", "p2", "p3", "p4", "p5"]
    assert tracker.is_playing and tracker.item_id == "item_b"


def test_no_marks_echoed_yet_means_nothing_heard(tracker):
    send(tracker, "item_a", 10)
    assert tracker.on_barge_in() == TruncatePoint("item_a", 0)


def test_partial_confirmation(tracker):
    names = send(tracker, "item_a", 10)
    for name in names[:4]:
        tracker.on_mark(name)
    assert tracker.is_playing
    assert tracker.on_barge_in() == TruncatePoint("item_a", 4 * FRAME // 8)  # 80 ms


def test_an_echo_confirms_the_older_marks_too(tracker):
    names = send(tracker, "item_a", 10)
    tracker.on_mark(names[6])  # earlier echoes lost or coalesced: audio plays in order
    assert tracker.on_barge_in() == TruncatePoint("item_a", 7 * 20)


def test_all_confirmed_means_playback_finished(tracker):
    for name in send(tracker, "item_a", 5):
        tracker.on_mark(name)
    assert not tracker.is_playing
    assert tracker.on_barge_in() is None


def test_barge_in_resets_and_later_echoes_are_stale(tracker):
    names = send(tracker, "item_a", 5)
    tracker.on_mark(names[0])
    assert tracker.on_barge_in() == TruncatePoint("item_a", 20)
    assert not tracker.is_playing and tracker.item_id is None
    # Twilio echoes the pending marks when it gets `clear`: none of them may count for anything now.
    for name in names[1:]:
        tracker.on_mark(name)
    assert tracker.on_barge_in() is None
    new = send(tracker, "item_b", 3)
    for name in names:
        tracker.on_mark(name)
    assert tracker.is_playing
    assert tracker.on_barge_in() == TruncatePoint("item_b", 0)
    assert new[0] not in names


def test_marks_of_an_old_item_after_a_new_item_started(tracker):
    old = send(tracker, "item_a", 4)
    new = send(tracker, "item_b", 4)
    tracker.on_mark(old[3])  # item_a finished playing; item_b has not started
    assert tracker.is_playing
    assert tracker.on_barge_in() == TruncatePoint("item_b", 0)

    old = send(tracker, "item_c", 4)
    new = send(tracker, "item_d", 4)
    tracker.on_mark(new[1])
    assert tracker.on_barge_in() == TruncatePoint("item_d", 2 * 20)  # item_c's bytes do not count for item_d


def test_unknown_malformed_and_out_of_order_marks_are_ignored(tracker):
    names = send(tracker, "item_a", 6)
    for junk in ("", "end", "p", "px", "p-1", "p0", "p99", "q3", "p²", "p" + "9" * 40, "P3"):
        tracker.on_mark(junk)
    assert tracker.on_barge_in() == TruncatePoint("item_a", 0)

    names = send(tracker, "item_b", 6)
    tracker.on_mark(names[3])
    tracker.on_mark(names[1])  # late duplicate of an already-confirmed mark: must not move playback back
    tracker.on_mark(names[3])  # repeated echo
    assert tracker.on_barge_in() == TruncatePoint("item_b", 4 * 20)


def test_truncate_point_uses_whole_milliseconds_of_uneven_chunks(tracker):
    names = [tracker.on_audio_sent("item_a", n) for n in (161, 7, 100)]
    assert names[0] is None
    tracker.on_mark(names[2])  # sent before the third chunk: the first two have played
    assert tracker.on_barge_in() == TruncatePoint("item_a", 168 // 8)


def test_reset_forgets_everything(tracker):
    names = send(tracker, "item_a", 3)
    tracker.reset()
    assert not tracker.is_playing
    tracker.on_mark(names[0])
    assert tracker.on_barge_in() is None
    assert send(tracker, "item_a", 1) == ["p4"]  # the sequence never restarts


def test_random_sessions_never_truncate_beyond_what_was_sent_or_played():
    rng = random.Random(7)
    for _ in range(300):
        tracker = PlaybackTracker(mark_every_ms=rng.choice((0, 20, 100, 200)))
        sent: dict[str, int] = {}
        marks: list[tuple[str, str, int]] = []  # (name, item, cumulative bytes of that item before the mark)
        item = last = "item_0"
        for step in range(rng.randint(1, 60)):
            if rng.random() < 0.1:
                item = f"item_{step}"
            nbytes = rng.choice((0, 1, 80, 160, 800, 4800))
            if (mark := tracker.on_audio_sent(item, nbytes)) is not None:
                marks.append((mark, last, sent[last]))  # it closes the audio sent so far, of the last item
            sent[item] = sent.get(item, 0) + nbytes
            last = item
            if rng.random() < 0.1 and (mark := tracker.flush()) is not None:
                marks.append((mark, item, sent[item]))
        echoed = rng.randint(0, len(marks))
        for name, _, _ in marks[:echoed]:
            tracker.on_mark(name)
        for name, _, _ in rng.sample(marks, k=min(3, len(marks))):  # stray duplicates and reorderings
            if marks.index(next(m for m in marks if m[0] == name)) < echoed:
                tracker.on_mark(name)
        heard = max((cum for _, it, cum in marks[:echoed] if it == item), default=0)
        unconfirmed = echoed < len(marks) or (heard < sent[item] and not marks_cover(marks, item, sent[item]))
        point = tracker.on_barge_in()
        if not unconfirmed:
            assert point is None
            continue
        assert point is not None and point.item_id == item
        assert point.truncate_point_ms == heard // 8
        assert point.truncate_point_ms <= sent[item] // 8


def marks_cover(marks: list[tuple[str, str, int]], item: str, nbytes: int) -> bool:
    """The last mark closes all of `item`'s audio (nothing of it sent after the last mark)."""
    return bool(marks) and marks[-1][1] == item and marks[-1][2] == nbytes


# --- marks every N ms: fewer marks, the truncate point still within N ms of what was heard ----------------


def test_the_first_chunk_goes_without_a_mark_and_a_mark_follows_once_n_ms_are_unmarked():
    tracker = PlaybackTracker(mark_every_ms=100)
    assert [tracker.on_audio_sent("item_a", FRAME) for _ in range(6)] == [None] * 5 + ["p1"]  # after 100 ms
    assert tracker.is_playing and tracker.queued_bytes == 6 * FRAME
    assert tracker.flush() == "p2"  # the 20 ms sent after p1
    assert tracker.flush() is None  # nothing unmarked
    tracker.on_mark("p2")
    assert not tracker.is_playing  # the end-of-response mark says playback finished
    assert tracker.on_barge_in() is None


def test_a_new_item_marks_off_the_previous_items_tail():
    tracker = PlaybackTracker(mark_every_ms=200)
    tracker.on_audio_sent("item_a", 3 * FRAME)
    assert tracker.on_audio_sent("item_b", FRAME) == "p1"  # closes item_a's 60 ms
    tracker.on_mark("p1")
    assert tracker.on_barge_in() == TruncatePoint("item_b", 0)


def test_barge_in_before_any_mark_clears_and_truncates_at_zero():
    tracker = PlaybackTracker(mark_every_ms=200)
    tracker.on_audio_sent("item_a", FRAME)
    assert tracker.is_playing
    assert tracker.on_barge_in() == TruncatePoint("item_a", 0)
    assert not tracker.is_playing and tracker.flush() is None


@pytest.mark.parametrize("mark_every_ms", [MARK_EVERY_MS, 40, 100, 150, 200])
@pytest.mark.parametrize("delta_ms", [20, 40, 60, 100, 120, 250])
def test_marks_are_at_most_n_ms_apart_and_about_one_per_n_ms(mark_every_ms, delta_ms):
    tracker = PlaybackTracker(mark_every_ms=mark_every_ms)
    positions = [0]  # ms of audio before each mark
    total_ms = 0
    for _ in range(3000 // delta_ms):
        if tracker.on_audio_sent("item_a", delta_ms * 8) is not None:
            positions.append(total_ms)
        total_ms += delta_ms
    if tracker.flush() is not None:
        positions.append(total_ms)
    assert positions[-1] == total_ms  # the end of the response is marked
    gaps = [b - a for a, b in itertools.pairwise(positions)]
    assert max(gaps) <= max(mark_every_ms, delta_ms)  # a chunk is never split
    assert len(gaps) <= total_ms // max(mark_every_ms // delta_ms * delta_ms, delta_ms) + 1


def simulate_barge_in(mark_every_ms: int, deltas: list[int], arrival_ms: list[float], barge_in_ms: float,
                      ) -> tuple[TruncatePoint | None, float]:
    """Twilio's side, faithfully enough: audio plays in order at 8 bytes/ms from its arrival, and a mark is echoed
    once everything sent before it has played (never before it arrived). Returns the tracker's truncate point
    for a barge-in at `barge_in_ms` (echoes that reached us by then applied) and the ms the caller actually heard."""
    tracker = PlaybackTracker(mark_every_ms=mark_every_ms)
    play_end = 0.0  # when the audio sent so far finishes playing
    marks: list[tuple[float, str]] = []  # (echo time, name)
    segments: list[tuple[float, float]] = []  # (start, duration) of each chunk's playback
    for nbytes, arrives in zip(deltas, arrival_ms, strict=True):
        if arrives > barge_in_ms:
            break
        if (name := tracker.on_audio_sent("item_a", nbytes)) is not None:
            marks.append((max(arrives, play_end), name))
        start = max(arrives, play_end)
        segments.append((start, nbytes / 8))
        play_end = start + nbytes / 8
    else:
        if (name := tracker.flush()) is not None:
            marks.append((max(arrival_ms[-1], play_end), name))
    for echoed_at, name in marks:
        if echoed_at <= barge_in_ms:
            tracker.on_mark(name)
    heard = sum(min(duration, max(0.0, barge_in_ms - start)) for start, duration in segments)
    return tracker.on_barge_in(), heard


@pytest.mark.parametrize("mark_every_ms", [MARK_EVERY_MS, 60, 100, 200])
@pytest.mark.parametrize("delta_ms", [20, 40, 50, 100])
@pytest.mark.parametrize("pace", ["burst", "real time"])
def test_the_truncate_point_is_within_n_ms_of_what_the_caller_heard(mark_every_ms, delta_ms, pace):
    deltas = [delta_ms * 8] * (4000 // delta_ms)
    # A burst: the model generates far faster than real time (all of it within 200 ms); or paced at real time.
    step = 200 / len(deltas) if pace == "burst" else delta_ms
    arrivals = [i * step for i in range(len(deltas))]
    for barge_in_ms in range(1, 4300, 7):
        point, heard_ms = simulate_barge_in(mark_every_ms, deltas, arrivals, barge_in_ms)
        if point is None:
            assert heard_ms == 4000  # only once all of it played and the end mark came back
            continue
        assert point.truncate_point_ms <= heard_ms  # never claims more than was heard
        # and lags it by N ms at the most (by one chunk for a chunk longer than N: chunks are never split)
        assert heard_ms - point.truncate_point_ms <= max(mark_every_ms, delta_ms)


def test_uneven_deltas_keep_the_truncate_point_within_n_ms():
    rng = random.Random(11)
    for _ in range(40):
        deltas = [rng.choice((8, 160, 240, 400, 480, 800)) for _ in range(60)]  # 1 to 100 ms each
        arrivals = sorted(rng.uniform(0, 1500) for _ in deltas)
        for barge_in_ms in range(1, 3000, 37):
            point, heard_ms = simulate_barge_in(150, deltas, arrivals, barge_in_ms)
            if point is not None:
                assert 0 <= heard_ms - point.truncate_point_ms <= 150
