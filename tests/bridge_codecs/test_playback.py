"""Barge-in arithmetic: what the caller heard, from marks Twilio echoed; no clock involved."""

from __future__ import annotations

import random

import pytest

from bridge.playback import PlaybackTracker, TruncatePoint

FRAME = 160  # 20 ms of μ-law


@pytest.fixture
def tracker() -> PlaybackTracker:
    return PlaybackTracker()


def send(tracker: PlaybackTracker, item_id: str, chunks: int, nbytes: int = FRAME) -> list[str]:
    return [tracker.on_audio_sent(item_id, nbytes) for _ in range(chunks)]


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
    tracker.on_mark(names[1])
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
    for _ in range(200):
        tracker = PlaybackTracker()
        sent: dict[str, int] = {}
        marks: list[tuple[str, str, int]] = []  # (name, item, cumulative bytes)
        item = "item_0"
        for step in range(rng.randint(1, 60)):
            if rng.random() < 0.1:
                item = f"item_{step}"
            nbytes = rng.choice((0, 1, 80, 160, 800, 4800))
            sent[item] = sent.get(item, 0) + nbytes
            marks.append((tracker.on_audio_sent(item, nbytes), item, sent[item]))
        echoed = rng.randint(0, len(marks))
        for name, _, _ in marks[:echoed]:
            tracker.on_mark(name)
        for name, _, _ in rng.sample(marks, k=min(3, len(marks))):  # stray duplicates and reorderings
            if marks.index(next(m for m in marks if m[0] == name)) < echoed:
                tracker.on_mark(name)
        point = tracker.on_barge_in()
        if echoed == len(marks):
            assert point is None
            continue
        assert point is not None and point.item_id == item
        heard = max((cum for _, it, cum in marks[:echoed] if it == item), default=0)
        assert point.truncate_point_ms == heard // 8
        assert point.truncate_point_ms <= sent[item] // 8
