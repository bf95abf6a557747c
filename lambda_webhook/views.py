"""The Twilio webhooks: incoming call, call/stream status, and what to do when the stream ends.

Every reply Twilio gets is valid TwiML or a plain 4xx: a 5xx would make Twilio play its own error message
to the caller. Anything that goes wrong while answering becomes a spoken apology and a hang-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import wraps

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from calls import services, stream_token
from calls.models import Call
from lambda_webhook import twiml
from lambda_webhook.signature import is_authentic

log = logging.getLogger(__name__)
SID_CHARS = frozenset("abcdefABCDEF0123456789")


def _twiml(body: str) -> HttpResponse:
    return HttpResponse(body, content_type="text/xml; charset=utf-8")


def _valid_sid(value: str, prefix: str) -> bool:
    return len(value) == 34 and value.startswith(prefix) and set(value[2:]) <= SID_CHARS


def twilio_webhook(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """POST only, CSRF-exempt (Twilio signs instead), signature verified before anything else."""

    @csrf_exempt
    @require_POST
    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        if not is_authentic(request):
            log.warning("twilio webhook %s refused: missing or invalid X-Twilio-Signature", request.path)
            return HttpResponseForbidden("invalid signature", content_type="text/plain")
        call_sid = request.POST.get("CallSid", "")
        if not _valid_sid(call_sid, "CA"):
            log.warning("twilio webhook %s refused: bad CallSid", request.path)
            return HttpResponseBadRequest("CallSid missing or malformed", content_type="text/plain")
        account = settings.TWILIO_ACCOUNT_SID
        if account and request.POST.get("AccountSid") != account:
            log.warning("twilio webhook %s refused: request for another account", request.path)
            return HttpResponseForbidden("wrong account", content_type="text/plain")
        return view(request)

    return wrapper


def _parse_timestamp(value: str) -> datetime | None:
    """Twilio's Timestamp is RFC 2822 ("Mon, 16 Aug 2010 03:45:01 +0000")."""
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None


def _endpoint(path: str) -> str:
    return f"{settings.PUBLIC_WEBHOOK_BASE_URL}/twilio/{path}"


@twilio_webhook
def voice(request: HttpRequest) -> HttpResponse:
    call_sid = request.POST["CallSid"]
    from_number, to_number = request.POST.get("From", ""), request.POST.get("To", "")
    try:
        config = services.resolve_config(to_number)
        call = services.start_call(call_sid, request.POST.get("AccountSid", ""), from_number, to_number, config)
        if config is None or not settings.OPENAI_API_KEY:
            reason = "no agent config" if config is None else "OPENAI_API_KEY is not set"
            log.error("call %s to %s not answered by an agent: %s", call_sid, services.mask_phone(to_number), reason)
            services.finish_call(call.pk, Call.EndReason.NOT_CONFIGURED)
            return _twiml(twiml.say_and_hang_up(twiml.APOLOGY))
        token = stream_token.mint(call_sid, config.pk)
    except DatabaseError:
        log.exception("call %s: database unavailable, apologising", call_sid)
        return _twiml(twiml.say_and_hang_up(twiml.APOLOGY))
    log.info("call %s from %s to %s → config %s", call_sid, services.mask_phone(from_number),
             services.mask_phone(to_number), config.pk)
    return _twiml(
        twiml.connect_stream(settings.BRIDGE_PUBLIC_URL, token, _endpoint("status"), _endpoint("stream-ended"),
                             twiml.current_traceparent())
    )


@twilio_webhook
def status(request: HttpRequest) -> HttpResponse:
    """Call status callbacks (CallStatus) and <Stream> status callbacks (StreamEvent), idempotently."""
    call_sid = request.POST["CallSid"]
    call_status = request.POST.get("CallStatus")
    stream_event = request.POST.get("StreamEvent")
    if not call_status and not stream_event:
        return HttpResponseBadRequest("CallStatus or StreamEvent required", content_type="text/plain")
    try:
        if call_status:
            duration = request.POST.get("CallDuration", "")
            at = _parse_timestamp(request.POST.get("Timestamp", ""))
            try:
                services.apply_status_callback(call_sid, call_status, int(duration) if duration.isdigit() else None, at)
            except ValueError:
                return HttpResponseBadRequest("unknown CallStatus", content_type="text/plain")
        if stream_event == "stream-error":
            log.warning("call %s: Twilio reports a stream error: %s", call_sid,
                        request.POST.get("StreamError", "")[:200])
    except DatabaseError:
        # Twilio retries nothing here; the bridge records the end itself. Say so and move on.
        log.exception("call %s: could not record status callback", call_sid)
        return HttpResponse(status=503)
    return HttpResponse(status=204)


@twilio_webhook
def stream_ended(request: HttpRequest) -> HttpResponse:
    """Twilio asks what comes after <Connect> once the bridge closes the stream."""
    call_sid = request.POST["CallSid"]
    try:
        call = Call.objects.filter(twilio_call_sid=call_sid).only("end_reason", "config_snapshot", "to_number").first()
    except DatabaseError:
        log.exception("call %s: database unavailable after stream end", call_sid)
        return _twiml(twiml.say_and_hang_up(twiml.UPSTREAM_APOLOGY))
    reason = call.end_reason if call else ""
    if reason == Call.EndReason.TRANSFERRED and call and call.config_snapshot.get("transfer_number"):
        return _twiml(twiml.transfer(call.config_snapshot["transfer_number"], call.to_number, twiml.APOLOGY))
    if reason in {Call.EndReason.AGENT_ENDED, Call.EndReason.CALLER_HANGUP}:
        return _twiml(twiml.hang_up())
    if reason == Call.EndReason.MAX_DURATION:
        return _twiml(twiml.say_and_hang_up(twiml.TIME_LIMIT))
    if reason == Call.EndReason.DRAINED:
        return _twiml(twiml.say_and_hang_up(twiml.DRAINED))
    return _twiml(twiml.say_and_hang_up(twiml.UPSTREAM_APOLOGY))
