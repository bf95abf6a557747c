"""Outbound calls: the guards, the Call row, Twilio's `calls.create`, and what answering-machine detection
(AMD) decides. `place_call`, the dashboard form and the JSON API all come through `place_call` here.

The order matters: every guard runs before anything is stored; the Call row exists (status ringing,
counted against the concurrency limit) before Twilio is asked, so a refusal leaves a failed row that says
why, never a call Twilio placed that voiceops does not know.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from calls import services
from calls.forms import normalize_phone
from calls.models import AgentConfig, Call, DoNotCallNumber, PhoneNumber
from calls.validators import validate_e164

log = logging.getLogger(__name__)

TWILIO_TIMEOUT_S = 15.0
RING_TIMEOUT_S = 30  # Twilio's `Timeout`: how long it lets the phone ring
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
# A row still "live" after this long past its config's call limit lost its final status callback: it no
# longer holds a concurrency slot.
STALE_AFTER = timedelta(minutes=10)

# Twilio's error codes for calls.create that mean "this number, from this account": what staff can do.
TWILIO_HINTS = {
    20003: "Twilio refused the credentials: check TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN, and that the "
    "account is not suspended (for example for an unpaid balance).",
    21210: "The caller ID is not a number of this Twilio account (or a verified caller ID).",
    21212: "The caller ID is not a valid phone number.",
    21211: "The number is not a valid phone number.",
    21214: "Twilio cannot route a call to this number.",
    21215: "The account's geographic permissions do not allow calling this country: enable it under "
    "Voice > Settings > Geo permissions in the Twilio console.",
    21216: "This number is blocked for the account.",
    21217: "The number does not appear to be valid.",
}


class Refusal(StrEnum):
    INVALID_NUMBER = "invalid_number"
    DO_NOT_CALL = "do_not_call"
    OUTSIDE_HOURS = "outside_hours"
    TOO_MANY_CALLS = "too_many_calls"
    NOT_CONFIGURED = "not_configured"
    TWILIO_REFUSED = "twilio_refused"
    TWILIO_UNREACHABLE = "twilio_unreachable"


class OutboundRefused(Exception):
    """The call was not placed. `message` is safe to show staff and API clients; `call` is the failed row
    when one was created (Twilio refused), else None (a guard refused before anything was stored)."""

    def __init__(self, refusal: Refusal, message: str, call: Call | None = None,
                 twilio_code: int | None = None) -> None:
        super().__init__(message)
        self.refusal, self.message, self.call, self.twilio_code = refusal, message, call, twilio_code


def rest_client(http_client: HttpClient | None = None) -> Client:
    """The twilio library's client, pointed at TWILIO_API_BASE_URL (tests: the local fake)."""
    client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN,
                    http_client=http_client or TwilioHttpClient(timeout=TWILIO_TIMEOUT_S))
    client.api.base_url = settings.TWILIO_API_BASE_URL.rstrip("/")
    return client


def webhook_url(path: str) -> str:
    return f"{settings.PUBLIC_WEBHOOK_BASE_URL}/twilio/{path}"


# --- guards (pure) -----------------------------------------------------------------------------------

def within_calling_hours(config: AgentConfig, now: datetime) -> bool:
    """`now` in the config's time zone falls in [start, end); a start after the end spans midnight."""
    hour = now.astimezone(ZoneInfo(config.calling_time_zone)).hour
    start, end = config.calling_hours_start, config.calling_hours_end
    return start <= hour < end if start < end else (hour >= start or hour < end)


def e164(number: str) -> str:
    """The number without separators, or OutboundRefused when it is not E.164."""
    cleaned = normalize_phone(number)
    try:
        validate_e164(cleaned)
    except ValidationError:
        raise OutboundRefused(
            Refusal.INVALID_NUMBER,
            f"{number!r} is not an E.164 number: a + then the country code and number, e.g. +14155550123.",
        ) from None
    return cleaned


def pick_config(name: str | None) -> AgentConfig:
    configs = AgentConfig.objects.filter(is_active=True)
    config = configs.filter(name=name).first() if name else configs.filter(is_default=True).first()
    if config is None:
        raise OutboundRefused(
            Refusal.NOT_CONFIGURED,
            f"No active agent config named {name!r}." if name else "There is no active default agent config.",
        )
    return config


def caller_id(config: AgentConfig) -> str:
    """The config's own number (the first active one) is what the callee sees and may call back."""
    number = (
        PhoneNumber.objects.filter(agent_config=config, is_active=True).order_by("number")
        .values_list("number", flat=True).first()
    )
    if not number:
        raise OutboundRefused(
            Refusal.NOT_CONFIGURED,
            f"“{config}” has no active phone number to call from: route a Twilio number to it first.",
        )
    return number


def _check_guards(config: AgentConfig, to: str, now: datetime) -> None:
    if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
        raise OutboundRefused(Refusal.NOT_CONFIGURED, "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set.")
    if DoNotCallNumber.objects.filter(number=to).exists():
        raise OutboundRefused(Refusal.DO_NOT_CALL, "This number is on the do-not-call list.")
    if not within_calling_hours(config, now):
        raise OutboundRefused(
            Refusal.OUTSIDE_HOURS,
            f"Outside “{config}”'s calling hours ({config.calling_hours_start:02d}:00-"
            f"{config.calling_hours_end:02d}:00 {config.calling_time_zone}).",
        )


def _live_outbound(config: AgentConfig, now: datetime) -> int:
    since = now - timedelta(minutes=config.max_call_minutes) - STALE_AFTER
    return Call.objects.filter(
        agent_config=config, direction=Call.Direction.OUTBOUND, status__in=services.LIVE_STATUSES,
        created_at__gte=since, is_test=False,
    ).count()


# --- placing a call ----------------------------------------------------------------------------------

def amd_parameters(config: AgentConfig) -> dict[str, Any]:
    """Twilio's async AMD: the call connects at once (the agent greets a person without a detection
    pause) and the verdict arrives later at /twilio/amd. DetectMessageEnd waits for the beep, which a
    voicemail needs; Enable answers as soon as it knows, which is enough to hang up."""
    if config.machine_detection == AgentConfig.MachineDetection.OFF:
        return {}
    mode = "DetectMessageEnd" if config.machine_detection == AgentConfig.MachineDetection.VOICEMAIL else "Enable"
    return {
        "machine_detection": mode,
        "async_amd": "true",
        "async_amd_status_callback": webhook_url("amd"),
        "async_amd_status_callback_method": "POST",
    }


def _create_row(config: AgentConfig, to: str, from_number: str, placed_by: str, now: datetime) -> Call:
    with transaction.atomic():
        # One outbound placement per config at a time past this lock: the count and the insert agree.
        AgentConfig.objects.select_for_update().filter(pk=config.pk).first()
        live = _live_outbound(config, now)
        if live >= config.max_concurrent_outbound:
            raise OutboundRefused(
                Refusal.TOO_MANY_CALLS,
                f"“{config}” already has {live} outbound call(s) under way (its limit is "
                f"{config.max_concurrent_outbound}). Try again when one ends.",
            )
        snapshot = services.config_snapshot(config)
        snapshot["outbound"] = {
            "machine_detection": config.machine_detection, "voicemail_message": config.voicemail_message,
        }
        return Call.objects.create(
            # Twilio names the call only once it accepts it; until then the row has a local placeholder.
            twilio_call_sid=f"pending-{uuid.uuid4().hex}", direction=Call.Direction.OUTBOUND,
            from_number=from_number, to_number=to, agent_config=config, config_snapshot=snapshot,
            engine=config.engine, placed_by=placed_by[:150], twilio_status="queued",
        )


def _fail(call: Call, message: str, data: dict[str, Any]) -> None:
    Call.objects.filter(pk=call.pk).update(status=Call.Status.FAILED, ended_at=timezone.now())
    services.add_events(call.pk, [{"seq": 0, "kind": "error", "t_ms": 0, "text": message, "data": data}])
    call.refresh_from_db()


def place_call(to: str, config_name: str | None = None, placed_by: str = "",
               now: datetime | None = None) -> Call:
    """Call `to` with the named (or default) config. Returns the Call with Twilio's SID; raises
    OutboundRefused with a message for staff when a guard or Twilio refuses."""
    now = now or timezone.now()
    number = e164(to)
    config = pick_config(config_name)
    _check_guards(config, number, now)
    from_number = caller_id(config)
    call = _create_row(config, number, from_number, placed_by, now)
    try:
        created = rest_client().calls.create(
            to=number, from_=from_number, url=webhook_url("outbound"), method="POST",
            status_callback=webhook_url("status"), status_callback_method="POST",
            status_callback_event=STATUS_EVENTS, timeout=RING_TIMEOUT_S, **amd_parameters(config),
        )
    except TwilioRestException as exc:
        hint = TWILIO_HINTS.get(exc.code or 0, "")
        message = f"Twilio refused the call (error {exc.code}). " + (f"{hint} " if hint else "") + f"Twilio: {exc.msg}"
        log.warning("outbound call %s to %s refused by Twilio: HTTP %s error %s", call.pk,
                    services.mask_phone(number), exc.status, exc.code)
        _fail(call, message, {"twilio_code": exc.code, "http_status": exc.status})
        raise OutboundRefused(Refusal.TWILIO_REFUSED, message, call, exc.code) from None
    except (TwilioException, requests.RequestException, OSError) as exc:
        message = f"Could not reach Twilio's API ({type(exc).__name__}); the call was not placed."
        log.warning("outbound call %s to %s: Twilio unreachable: %s", call.pk, services.mask_phone(number),
                    type(exc).__name__)
        _fail(call, message, {"error": type(exc).__name__})
        raise OutboundRefused(Refusal.TWILIO_UNREACHABLE, message, call) from None
    Call.objects.filter(pk=call.pk).update(
        twilio_call_sid=created.sid, account_sid=created.account_sid or "", twilio_status=created.status or "queued",
    )
    call.refresh_from_db()
    log.info("outbound call %s placed to %s (config %s, by %s)", call.twilio_call_sid,
             services.mask_phone(number), config.pk, placed_by or "?")
    return call


# --- answering-machine detection ---------------------------------------------------------------------

class AmdAction(StrEnum):
    CONTINUE = "continue"  # a person (or Twilio could not tell): the agent keeps talking
    HANG_UP = "hang_up"
    VOICEMAIL = "voicemail"


MACHINE = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"})


@dataclass(frozen=True, slots=True)
class AmdDecision:
    action: AmdAction
    message: str = ""


def amd_decision(snapshot: dict[str, Any], answered_by: str) -> AmdDecision:
    """What to do with Twilio's AnsweredBy verdict, from the config as it was when the call was placed."""
    outbound = snapshot.get("outbound") or {}
    mode = outbound.get("machine_detection", AgentConfig.MachineDetection.OFF)
    if answered_by == "fax":
        return AmdDecision(AmdAction.HANG_UP)
    if answered_by not in MACHINE or mode == AgentConfig.MachineDetection.OFF:
        return AmdDecision(AmdAction.CONTINUE)
    message = (outbound.get("voicemail_message") or "").strip()
    if mode == AgentConfig.MachineDetection.VOICEMAIL and message:
        return AmdDecision(AmdAction.VOICEMAIL, message)
    return AmdDecision(AmdAction.HANG_UP)


def record_answered_by(call_sid: str, answered_by: str) -> Call | None:
    Call.objects.filter(twilio_call_sid=call_sid).update(answered_by=answered_by[:32])
    return Call.objects.filter(twilio_call_sid=call_sid).first()


def redirect_call(call_sid: str, twiml: str) -> None:
    """Replace what the live call is doing (its media stream ends) with `twiml`."""
    rest_client().calls(call_sid).update(twiml=twiml)
