from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from calls.models import Call, CallEvent

pytestmark = pytest.mark.django_db


def days_ago(n: float):
    return timezone.now() - timedelta(days=n)


def test_deletes_old_ended_calls_and_their_events_only(make_call, run):
    old = make_call(created=days_ago(100), events=[("caller", "hi"), ("agent", "hello")])
    make_call(created=days_ago(100), status=Call.Status.FAILED)
    recent = make_call(created=days_ago(10), events=[("caller", "hi")])
    live_ringing = make_call(created=days_ago(200), status=Call.Status.RINGING)
    live_talking = make_call(created=days_ago(200), status=Call.Status.IN_PROGRESS)

    out, _ = run("purge_calls", "--older-than", "90d")

    assert "deleted 2 call(s) and 2 event(s)" in out
    assert "kept 2 call(s) that are still ringing or in progress" in out
    assert set(Call.objects.values_list("pk", flat=True)) == {recent.pk, live_ringing.pk, live_talking.pk}
    assert not CallEvent.objects.filter(call_id=old.pk).exists()
    assert CallEvent.objects.filter(call_id=recent.pk).count() == 1


def test_dry_run_deletes_nothing_and_names_the_calls(make_call, run):
    old = make_call(created=days_ago(15), events=[("caller", "hi")])
    make_call(created=days_ago(1))

    out, _ = run("purge_calls", "--older-than", "2w", "--dry-run")

    assert "would delete 1 call(s) and 1 event(s)" in out
    assert old.twilio_call_sid in out
    assert Call.objects.count() == 2


def test_hours_and_batches(make_call, run):
    for _ in range(5):
        make_call(created=timezone.now() - timedelta(hours=13))
    keep = make_call(created=timezone.now() - timedelta(hours=11))
    out, _ = run("purge_calls", "--older-than", "12h", "--batch-size", "2")  # three rounds of deletes

    assert "deleted 5 call(s)" in out
    assert list(Call.objects.values_list("pk", flat=True)) == [keep.pk]


@pytest.mark.parametrize("value", ["90", "ninety days", "3y", "0d", "-1d", ""])
def test_bad_ages_are_refused(run, value):
    with pytest.raises(CommandError, match="older-than"):
        run("purge_calls", "--older-than", value)


def test_parse_age_units():
    from calls.management.commands._maintenance import parse_age

    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("2W") == timedelta(weeks=2)
