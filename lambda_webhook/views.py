"""The Twilio webhooks: incoming call, call/stream status, and what to do when the stream ends.

Every reply Twilio gets is valid TwiML or a plain 4xx: a 5xx would make Twilio play its own error message
to the caller. Anything that goes wrong while answering becomes a spoken apology and a hang-up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.base.exceptions import TwilioException

from calls import outbound as outbound_calls
from calls import services, stream_token, transfers
from calls.models import AgentConfig, Call, CallEvent
from lambda_webhook import metrics, twiml
from lambda_webhook.signature import is_authentic
from voiceops import logs

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
        try:
            request.POST  # noqa: B018 -- read the form here, before any frame holds the auth token
        except (RequestDataTooBig, TooManyFieldsSent) as exc:
            log.warning("twilio webhook %s refused: %s", request.path, type(exc).__name__)
            return HttpResponseBadRequest("request too large", content_type="text/plain")
        if not is_authentic(request):
            metrics.count(metrics.SIGNATURE_FAILURES)
            log.warning("twilio webhook %s refused: missing or invalid X-Twilio-Signature", request.path)
            return HttpResponseForbidden("invalid signature", content_type="text/plain")
        call_sid = request.POST.get("CallSid", "")
        if not _valid_sid(call_sid, "CA"):
            log.warning("twilio webhook %s refused: bad CallSid", request.path)
            return HttpResponseBadRequest("CallSid missing or malformed", content_type="text/plain")
        logs.bind(call_sid=call_sid)
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


def _connect_to_agent(call: Call, config_id: int | None) -> HttpResponse:
    """The TwiML that hands an answered call (inbound or outbound) to the bridge, or the apology when no
    agent can take it."""
    if config_id is None or not settings.OPENAI_API_KEY:
        reason = "no agent config" if config_id is None else "OPENAI_API_KEY is not set"
        log.error("call %s to %s not answered by an agent: %s", call.twilio_call_sid,
                  services.mask_phone(call.to_number), reason)
        services.finish_call(call.pk, Call.EndReason.NOT_CONFIGURED)
        metrics.count(metrics.CALLS_RECEIVED, metrics.ERRORS)
        return _twiml(twiml.say_and_hang_up(twiml.APOLOGY))
    metrics.count(metrics.CALLS_RECEIVED)
    return _stream_to_agent(call.twilio_call_sid, config_id,
                            announcement=call.config_snapshot.get("consent_message") or "")


def _stream_to_agent(call_sid: str, config_id: int, announcement: str = "", stream_number: int = 1) -> HttpResponse:
    """<Connect><Stream> to the bridge with a fresh single-use token for the call's `stream_number`-th stream."""
    token = stream_token.mint(call_sid, config_id, stream=stream_number)
    return _twiml(
        twiml.connect_stream(settings.BRIDGE_PUBLIC_URL, token, _endpoint("status"), _endpoint("stream-ended"),
                             twiml.current_traceparent(), announcement=announcement)
    )


@twilio_webhook
def voice(request: HttpRequest) -> HttpResponse:
    call_sid = request.POST["CallSid"]
    from_number, to_number = request.POST.get("From", ""), request.POST.get("To", "")
    try:
        config = services.resolve_config(to_number)
        call = services.start_call(call_sid, request.POST.get("AccountSid", ""), from_number, to_number, config,
                                   is_test=request.POST.get(services.TEST_CALL_PARAM) == "1")
        response = _connect_to_agent(call, config.pk if config else None)
    except DatabaseError:
        log.exception("call %s: database unavailable, apologising", call_sid)
        metrics.count(metrics.CALLS_RECEIVED, metrics.ERRORS)
        return _twiml(twiml.say_and_hang_up(twiml.APOLOGY))
    if config is not None:
        log.info("call %s from %s to %s → config %s", call_sid, services.mask_phone(from_number),
                 services.mask_phone(to_number), config.pk)
    return response


@twilio_webhook
def outbound(request: HttpRequest) -> HttpResponse:
    """The callee answered a call voiceops placed (calls.outbound.place_call): connect it to the agent
    of the Call row created then."""
    call_sid = request.POST["CallSid"]
    try:
        call = Call.objects.filter(twilio_call_sid=call_sid, direction=Call.Direction.OUTBOUND).first()
        if call is None:
            log.warning("outbound webhook for unknown call %s: hanging up", call_sid)
            return _twiml(twiml.hang_up())
        response = _connect_to_agent(call, call.agent_config_id)
    except DatabaseError:
        log.exception("call %s: database unavailable, apologising", call_sid)
        return _twiml(twiml.say_and_hang_up(twiml.APOLOGY))
    log.info("outbound call %s answered at %s → config %s", call_sid, services.mask_phone(call.to_number),
             call.agent_config_id)
    return response


@twilio_webhook
def amd(request: HttpRequest) -> HttpResponse:
    """Twilio's async answering-machine verdict for an outbound call: a person keeps the agent; a machine
    gets the config's voicemail message after the beep, or a hang-up."""
    call_sid = request.POST["CallSid"]
    answered_by = request.POST.get("AnsweredBy", "")
    if not answered_by:
        return HttpResponseBadRequest("AnsweredBy required", content_type="text/plain")
    try:
        call = outbound_calls.record_answered_by(call_sid, answered_by)
    except DatabaseError:
        log.exception("call %s: could not record the AMD verdict", call_sid)
        return HttpResponse(status=503)
    if call is None:
        return HttpResponse(status=204)
    decision = outbound_calls.amd_decision(call.config_snapshot, answered_by)
    log.info("outbound call %s answered by %s → %s", call_sid, answered_by, decision.action)
    if decision.action == outbound_calls.AmdAction.CONTINUE:
        return HttpResponse(status=204)
    reply = (
        twiml.say_and_hang_up(decision.message) if decision.action == outbound_calls.AmdAction.VOICEMAIL
        else twiml.hang_up()
    )
    try:
        outbound_calls.redirect_call(call_sid, reply)
    except (TwilioException, OSError) as exc:
        # The call goes on with the agent; nothing else to do but say so.
        log.warning("outbound call %s: could not redirect after AMD (%s)", call_sid, type(exc).__name__)
    return HttpResponse(status=204)


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
        metrics.count(metrics.ERRORS)
        return HttpResponse(status=503)
    return HttpResponse(status=204)


@twilio_webhook
def stream_ended(request: HttpRequest) -> HttpResponse:
    """Twilio asks what comes after <Connect> once the bridge closes the stream."""
    call_sid = request.POST["CallSid"]
    try:
        call = (
            Call.objects.filter(twilio_call_sid=call_sid)
            .only("end_reason", "transfer_state", "config_snapshot", "to_number", "from_number", "direction").first()
        )
    except DatabaseError:
        log.exception("call %s: database unavailable after stream end", call_sid)
        return _twiml(twiml.say_and_hang_up(twiml.UPSTREAM_APOLOGY))
    reason = call.end_reason if call else ""
    # The bridge leaves a call it hands to a transfer live (DIALING); a bridge from before that ended it.
    transferring = call is not None and (call.transfer_state == Call.TransferState.DIALING
                                         or reason == Call.EndReason.TRANSFERRED)
    if transferring and call.config_snapshot.get("transfer_number"):
        warm = call.config_snapshot.get("transfer_mode", AgentConfig.TransferMode.WARM) == AgentConfig.TransferMode.WARM
        whisper_url = f"{_endpoint('whisper')}?{urlencode({'call': call_sid})}" if warm else None
        caller_id = call.from_number if call.direction == Call.Direction.OUTBOUND else call.to_number
        return _twiml(twiml.transfer(call.config_snapshot["transfer_number"], caller_id,
                                     _endpoint("transfer-ended"), whisper_url))
    if reason in {Call.EndReason.AGENT_ENDED, Call.EndReason.CALLER_HANGUP}:
        return _twiml(twiml.hang_up())
    if reason == Call.EndReason.MAX_DURATION:
        return _twiml(twiml.say_and_hang_up(twiml.TIME_LIMIT))
    if reason == Call.EndReason.DRAINED:
        return _twiml(twiml.say_and_hang_up(twiml.DRAINED))
    return _twiml(twiml.say_and_hang_up(twiml.UPSTREAM_APOLOGY))


def transfer_summary(call: Call) -> str:
    """What the person taking a warm transfer hears first: the summary the bridge stored when the call ended as
    transferred (bridge.transfer: the agent, the reason, the caller's last lines); for a call without one, who is
    calling through which agent, and why (the reason the model gave the transfer_call tool)."""
    if call.transfer_summary:
        return f"{call.transfer_summary} Connecting you now."
    reason = ""
    tool_call = call.events.filter(kind=CallEvent.Kind.TOOL_CALL, text="transfer_call").order_by("-seq").first()
    if tool_call is not None:
        try:
            arguments = json.loads(tool_call.data.get("arguments") or "{}")
        except (TypeError, ValueError):
            arguments = {}
        if isinstance(arguments, dict) and isinstance(arguments.get("reason"), str):
            reason = arguments["reason"].strip()[:300]
    agent = call.config_snapshot.get("name") or "voice"
    summary = f"A call transferred by the {agent} assistant. "
    summary += f"The caller needs: {reason}. " if reason else "The caller asked for a person. "
    return summary + "Connecting you now."


@twilio_webhook
def whisper(request: HttpRequest) -> HttpResponse:
    """Played to the person who answers a warm transfer (the <Number url>), before the caller is connected.
    `call` names the caller's call; CallSid is the new leg's."""
    parent_sid = request.GET.get("call", "")
    if not _valid_sid(parent_sid, "CA"):
        return HttpResponseBadRequest("call missing or malformed", content_type="text/plain")
    try:
        call = Call.objects.filter(twilio_call_sid=parent_sid).first()
        text = transfer_summary(call) if call else "A transferred call. Connecting you now."
    except DatabaseError:
        log.exception("call %s: database unavailable for the transfer whisper", parent_sid)
        text = "A transferred call. Connecting you now."
    return _twiml(twiml.whisper(text))


@twilio_webhook
def transfer_ended(request: HttpRequest) -> HttpResponse:
    """The <Dial> of a transfer is over (DialCallStatus): hang up after a conversation; when nobody answered,
    bring the caller back to the agent on a new stream, or tell them and hang up (calls.transfers decides and
    records the outcome in the call's events)."""
    call_sid = request.POST["CallSid"]
    dial_status = request.POST.get("DialCallStatus", "")
    try:
        outcome = transfers.transfer_ended(call_sid, dial_status, request.POST.get("DialCallDuration", ""),
                                           request.POST.get("CallStatus", ""), bool(settings.OPENAI_API_KEY))
        if outcome.action == transfers.AfterDial.BACK_TO_AGENT:
            return _stream_to_agent(call_sid, outcome.config_id, stream_number=outcome.stream_number)
    except DatabaseError:
        log.exception("call %s: could not record the transfer outcome", call_sid)
        answered = dial_status in transfers.ANSWERED_DIAL_STATUSES
        return _twiml(twiml.hang_up() if answered else twiml.say_and_hang_up(twiml.TRANSFER_UNANSWERED))
    if outcome.action == transfers.AfterDial.HANG_UP:
        return _twiml(twiml.hang_up())
    return _twiml(twiml.say_and_hang_up(twiml.TRANSFER_UNANSWERED))
