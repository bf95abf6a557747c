"""Bring the Twilio account's phone numbers into voiceops, and optionally point them at its webhooks.

    manage.py sync_twilio_numbers --dry-run
    manage.py sync_twilio_numbers --set-webhooks

New numbers route to the default agent config; numbers already here keep their routing. With
--set-webhooks each voice number's voice_url becomes PUBLIC_WEBHOOK_BASE_URL/twilio/voice and its
status_callback PUBLIC_WEBHOOK_BASE_URL/twilio/status (both POST). Nothing is deleted: numbers that are
here but no longer in the account are only listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from calls.models import AgentConfig, PhoneNumber
from calls.outbound import rest_client
from calls.validators import validate_e164


@dataclass(frozen=True, slots=True)
class TwilioNumber:
    sid: str
    number: str
    friendly_name: str
    voice_url: str
    voice_method: str
    status_callback: str
    status_callback_method: str
    voice_capable: bool
    routed_elsewhere: str  # a voice application or SIP trunk takes precedence over voice_url

    @classmethod
    def from_record(cls, record: Any) -> TwilioNumber:
        capabilities = record.capabilities or {}
        elsewhere = ""
        if record.trunk_sid:
            elsewhere = f"SIP trunk {record.trunk_sid}"
        elif record.voice_application_sid:
            elsewhere = f"application {record.voice_application_sid}"
        return cls(
            sid=record.sid,
            number=record.phone_number or "",
            friendly_name=record.friendly_name or "",
            voice_url=record.voice_url or "",
            voice_method=(record.voice_method or "").upper(),
            status_callback=record.status_callback or "",
            status_callback_method=(record.status_callback_method or "").upper(),
            voice_capable=bool(capabilities.get("voice", True)),
            routed_elsewhere=elsewhere,
        )


def webhook_urls(base: str) -> dict[str, str]:
    return {
        "voice_url": f"{base}/twilio/voice",
        "voice_method": "POST",
        "status_callback": f"{base}/twilio/status",
        "status_callback_method": "POST",
    }


def webhook_changes(number: TwilioNumber, wanted: dict[str, str]) -> dict[str, str]:
    """Nothing when the number already points here, so a second run sends nothing; otherwise all four
    fields, so URL and method never end up half-updated."""
    return {} if all(getattr(number, name) == value for name, value in wanted.items()) else dict(wanted)


def describe_twilio_error(exc: TwilioException) -> str:
    """ "HTTP 401 Authenticate" from either error shape the library raises (REST errors, and page fetch
    errors that carry the raw response), never a repr of the response."""
    if isinstance(exc, TwilioRestException):
        return f"HTTP {exc.status} {exc.msg}"
    response = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(response, Response):
        try:
            message = json.loads(response.text).get("message", "")
        except (ValueError, AttributeError):
            message = ""
        return f"HTTP {response.status_code} {message}".strip()
    return str(exc)


def make_client(http_client: HttpClient | None = None) -> Client:
    sid, token = settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN
    if not sid or not token:
        raise CommandError(
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set to read the account's numbers."
        )
    return rest_client(http_client)


def fetch_numbers(client: Client) -> list[TwilioNumber]:
    try:
        return [TwilioNumber.from_record(r) for r in client.incoming_phone_numbers.list()]
    except TwilioException as exc:
        raise CommandError(f"Twilio refused the number list: {describe_twilio_error(exc)}") from exc


class Command(BaseCommand):
    help = (
        "Create/update PhoneNumber rows from the Twilio account; --set-webhooks points numbers at voiceops."
    )
    # Tests hand the twilio Client a fake HTTP client: the command's real edge, exercised offline.
    stealth_options = ("http_client",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Show what would change; change nothing.")
        parser.add_argument(
            "--set-webhooks",
            action="store_true",
            help="Set each number's voice URL and status callback to this deployment.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run, set_webhooks = options["dry_run"], options["set_webhooks"]
        wanted: dict[str, str] = {}
        if set_webhooks:
            base = settings.PUBLIC_WEBHOOK_BASE_URL
            if urlsplit(base).scheme != "https":
                raise CommandError(
                    f"PUBLIC_WEBHOOK_BASE_URL ({base}) must be https:// before Twilio is pointed at it."
                )
            wanted = webhook_urls(base)
        client = make_client(options.get("http_client"))
        numbers = fetch_numbers(client)
        prefix = "[dry run] " if dry_run else ""
        self.stdout.write(
            f"{prefix}{len(numbers)} number(s) in Twilio account {settings.TWILIO_ACCOUNT_SID[:6]}…"
        )

        usable = []
        for number in numbers:
            try:
                validate_e164(number.number)
            except ValidationError:
                self.stdout.write(f"  {number.number or number.sid}: skipped, not an E.164 number")
                continue
            if not number.voice_capable:
                self.stdout.write(f"  {number.number}: skipped, no voice capability")
                continue
            usable.append(number)

        existing = {p.number: p for p in PhoneNumber.objects.select_related("agent_config")}
        default = AgentConfig.objects.filter(is_default=True).first()
        new = [n for n in usable if n.number not in existing]
        if new and default is None:
            raise CommandError(
                f"{len(new)} new number(s) but no default agent config to route them to: "
                "mark a config as default (or run seed_demo) first. Nothing was changed."
            )

        created = updated = 0
        with transaction.atomic():
            for number in usable:
                row = existing.get(number.number)
                if row is None:
                    created += 1
                    assert default is not None
                    self.stdout.write(f"  {number.number}: new → {default.name}")
                    if not dry_run:
                        PhoneNumber.objects.create(
                            number=number.number,
                            label=number.friendly_name[:100],
                            agent_config=default,
                            twilio_sid=number.sid,
                        )
                    continue
                changes = []
                if row.twilio_sid != number.sid:
                    changes.append("twilio_sid")
                    row.twilio_sid = number.sid
                if not row.label and number.friendly_name:
                    changes.append("label")  # a label staff chose is kept
                    row.label = number.friendly_name[:100]
                if changes:
                    updated += 1
                    if not dry_run:
                        row.save(update_fields=changes)
                state = f"updated {', '.join(changes)}" if changes else "unchanged"
                self.stdout.write(f"  {number.number}: {state} → {row.agent_config.name} (routing kept)")

        hooked = 0
        if set_webhooks:
            for number in usable:
                changes = webhook_changes(number, wanted)
                if number.routed_elsewhere:
                    self.stdout.write(
                        f"  {number.number}: warning, Twilio routes it to {number.routed_elsewhere}, "
                        "which takes precedence over voice_url"
                    )
                if not changes:
                    self.stdout.write(f"  {number.number}: webhooks already set")
                    continue
                hooked += 1
                self.stdout.write(
                    f"  {number.number}: {prefix}set webhooks (voice_url was {number.voice_url or 'empty'})"
                )
                if dry_run:
                    continue
                try:
                    client.incoming_phone_numbers(number.sid).update(**changes)
                except TwilioException as exc:
                    raise CommandError(
                        f"Twilio refused the webhook update for {number.number}: {describe_twilio_error(exc)}"
                    ) from exc

        in_account = {n.number for n in numbers}
        gone = sorted(p for p, row in existing.items() if row.twilio_sid and p not in in_account)
        for number_text in gone:
            self.stdout.write(
                f"  {number_text}: no longer in the Twilio account (kept; deactivate it in admin)"
            )
        verb = "would be " if dry_run else ""
        summary = f"{prefix}{created} {verb}created, {updated} {verb}updated"
        if set_webhooks:
            summary += f", {hooked} webhook update(s)"
        self.stdout.write(summary)
