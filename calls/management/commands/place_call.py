"""Place an outbound call: the agent of a config calls a number through Twilio.

    manage.py place_call --to +14155550123 [--config "Front desk"]

Prints the call's SID. Exits non-zero with the reason when a guard (E.164, do-not-call list, calling
hours, concurrent calls) or Twilio refuses; a call Twilio refused stays in the history as failed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from calls import outbound


class Command(BaseCommand):
    help = "Place an outbound call with an agent config (the default one unless --config names another)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to", required=True, help="The number to call, E.164 (e.g. +14155550123).")
        parser.add_argument("--config", help="The agent config's name; the default config when left out.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            call = outbound.place_call(options["to"], options["config"], placed_by="manage.py place_call")
        except outbound.OutboundRefused as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(call.twilio_call_sid)
