"""Delete ended calls (and their events) older than an age, e.g. for a retention policy.

    manage.py purge_calls --older-than 90d --dry-run
    manage.py purge_calls --older-than 12h

Calls still ringing or in progress are never deleted, however old.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from calls import services
from calls.management.commands._maintenance import parse_age
from calls.models import Call, CallEvent

LIST_LIMIT = 20  # calls a dry run names before it only counts


class Command(BaseCommand):
    help = "Delete ended calls and their events older than --older-than (e.g. 90d, 12h, 2w)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="Age: a number and h, d or w (90d, 12h, 2w).")
        parser.add_argument("--batch-size", type=int, default=1000, help="Calls deleted per transaction.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be deleted; delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        age = parse_age(options["older_than"])
        cutoff = timezone.now() - age
        live_kept = Call.objects.filter(created_at__lt=cutoff, status__in=services.LIVE_STATUSES).count()
        if options["dry_run"]:
            doomed = services.purgeable_calls(cutoff)
            count = doomed.count()
            events = CallEvent.objects.filter(call__in=doomed).count()
            self.stdout.write(
                f"dry run: would delete {count} call(s) and {events} event(s) "
                f"created before {cutoff:%Y-%m-%d %H:%M %Z}."
            )
            for call in doomed.order_by("created_at")[:LIST_LIMIT]:
                self.stdout.write(
                    f"  {call.twilio_call_sid}  {call.created_at:%Y-%m-%d %H:%M}  {call.status}"
                )
            if count > LIST_LIMIT:
                self.stdout.write(f"  … and {count - LIST_LIMIT} more")
        else:
            calls, events = services.purge_calls(age, batch_size=max(1, options["batch_size"]))
            self.stdout.write(
                f"deleted {calls} call(s) and {events} event(s) created before {cutoff:%Y-%m-%d %H:%M %Z}."
            )
        if live_kept:
            self.stdout.write(f"kept {live_kept} call(s) that are still ringing or in progress.")
