"""The JSON API other systems use to place outbound calls and follow them.

    POST /api/v1/calls          {"to": "+14155550123", "config": "Reminders"}   → 201 {"id", "call_sid", "status", …}
    GET  /api/v1/calls/<sid>                                                     → 200 the call's state

`Authorization: Bearer <token>` (an ApiToken; only its SHA-256 is stored). Each token may place
`calls_per_minute` calls per rolling minute; more get 429 with Retry-After. Errors are JSON
`{"error": <code>, "message": <text>}`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from calls import outbound
from calls.models import ApiToken, Call

log = logging.getLogger(__name__)

TOKEN_PREFIX = "vo_"  # noqa: S105 - a marker that tells voiceops tokens apart, not a secret
RATE_WINDOW = timedelta(minutes=1)
REFUSAL_STATUS = {
    outbound.Refusal.INVALID_NUMBER: 400,
    outbound.Refusal.NOT_CONFIGURED: 400,
    outbound.Refusal.DO_NOT_CALL: 422,
    outbound.Refusal.OUTSIDE_HOURS: 422,
    outbound.Refusal.TOO_MANY_CALLS: 429,
    outbound.Refusal.TWILIO_REFUSED: 502,
    outbound.Refusal.TWILIO_UNREACHABLE: 503,
}


def _sha256(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_token(name: str, created_by: Any = None, calls_per_minute: int = 10) -> tuple[ApiToken, str]:
    """A new token; the raw value is returned once and never stored."""
    token = ApiToken(name=name, created_by=created_by, calls_per_minute=calls_per_minute)
    raw = assign_new_secret(token)
    token.save()
    return token, raw


def assign_new_secret(token: ApiToken) -> str:
    """Give a token a fresh secret (saved by the caller); returns the raw value, shown once."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token.prefix, token.token_sha256 = raw[:10], _sha256(raw)
    return raw


def _error(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": code, "message": message, **extra}, status=status)


def _placed_by(token: ApiToken) -> str:
    return f"api:{token.name}"


def api_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Bearer-token authentication (no cookies, so no CSRF); the token is passed to the view."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        token = None
        if scheme.lower() == "bearer" and raw.startswith(TOKEN_PREFIX):
            token = ApiToken.objects.filter(token_sha256=_sha256(raw.strip()), is_active=True).first()
        if token is None:
            log.warning("API %s refused: missing or unknown bearer token", request.path)
            response = _error(401, "unauthorized", "A valid `Authorization: Bearer <token>` header is required.")
            response["WWW-Authenticate"] = 'Bearer realm="voiceops"'
            return response
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return view(request, token, *args, **kwargs)

    return wrapper


def call_json(call: Call) -> dict[str, Any]:
    return {
        "id": call.pk, "call_sid": call.twilio_call_sid, "direction": call.direction, "to": call.to_number,
        "from": call.from_number, "config": call.agent_config.name if call.agent_config else None,
        "status": call.status, "twilio_status": call.twilio_status, "answered_by": call.answered_by or None,
        "end_reason": call.end_reason or None, "created_at": call.created_at.isoformat(),
        "duration_s": call.duration_s,
    }


@api_view
@require_POST
def create_call(request: HttpRequest, token: ApiToken) -> HttpResponse:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return _error(400, "invalid_json", "The body must be a JSON object.")
    if not isinstance(body, dict) or not isinstance(body.get("to"), str):
        return _error(400, "invalid_request", 'The body must be a JSON object with a "to" number.')
    config = body.get("config")
    if config is not None and not isinstance(config, str):
        return _error(400, "invalid_request", '"config" must be a config name.')
    recent = Call.objects.filter(placed_by=_placed_by(token), created_at__gte=timezone.now() - RATE_WINDOW).count()
    if recent >= token.calls_per_minute:
        response = _error(429, "rate_limited", f"This token may place {token.calls_per_minute} call(s) per minute.")
        response["Retry-After"] = "60"
        return response
    try:
        call = outbound.place_call(body["to"], config, placed_by=_placed_by(token))
    except outbound.OutboundRefused as exc:
        extra: dict[str, Any] = {}
        if exc.call is not None:
            extra["call"] = call_json(exc.call)
        if exc.twilio_code is not None:
            extra["twilio_code"] = exc.twilio_code
        response = _error(REFUSAL_STATUS[exc.refusal], str(exc.refusal), exc.message, **extra)
        if exc.refusal == outbound.Refusal.TOO_MANY_CALLS:
            response["Retry-After"] = "30"
        return response
    return JsonResponse(call_json(call), status=201)


@api_view
@require_GET
def call_status(request: HttpRequest, token: ApiToken, sid: str) -> HttpResponse:
    """A call this token placed (another token's calls are not found)."""
    call = Call.objects.select_related("agent_config").filter(twilio_call_sid=sid, placed_by=_placed_by(token)).first()
    if call is None:
        return _error(404, "not_found", "No call with this SID was placed with this token.")
    return JsonResponse(call_json(call))
