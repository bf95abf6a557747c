"""The signed, short-lived, single-call token that travels from the webhook's TwiML to the bridge.

Twilio's <Stream> URL cannot carry a query string, so the token goes in a <Parameter> and comes back in
`start.customParameters`. The signature proves the webhook minted it; the embedded time bounds its life;
binding it to the call SID stops it being replayed on another call, and the bridge's atomic
"first use" mark on the Call row stops it being replayed on the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.core import signing

SALT = "voiceops.stream-token.v1"


class TokenRejected(Exception):
    """The token is missing, forged, expired or not for this call. `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StreamGrant:
    call_sid: str
    config_id: int | None
    stream: int = 1  # which of the call's streams: 2 and on after a failed transfer brought the caller back


def mint(call_sid: str, config_id: int | None, browser: bool = False, stream: int = 1) -> str:
    """`browser` marks a staff test call from the dashboard: a browser cannot sign the WebSocket
    handshake as Twilio does, so this token itself (in the handshake's query string) is its proof.
    `stream`: the call's stream the token is for (`services.claim_stream`), after the first."""
    data: dict[str, object] = {"c": call_sid, "a": config_id}
    if browser:
        data["b"] = 1
    if stream != 1:
        data["s"] = stream
    return signing.dumps(data, salt=SALT, compress=False)


def is_browser_call(scope: dict[str, Any]) -> bool:
    """The WebSocket handshake carries `?token=` with a valid, unexpired browser test-call token. The
    token is still checked, bound to its call and claimed once at `start`, like any other."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    token = query.get("token", [""])[0]
    if not token:
        return False
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.STREAM_TOKEN_TTL_S)
    except signing.BadSignature:  # SignatureExpired included
        return False
    return isinstance(data, dict) and data.get("b") == 1


def verify(token: str | None, call_sid: str, max_age_s: int | None = None) -> StreamGrant:
    if not token:
        raise TokenRejected("missing stream token")
    ttl = settings.STREAM_TOKEN_TTL_S if max_age_s is None else max_age_s
    try:
        data = signing.loads(token, salt=SALT, max_age=ttl)
    except signing.SignatureExpired:
        raise TokenRejected("stream token expired") from None
    except signing.BadSignature:
        raise TokenRejected("stream token invalid") from None
    if not isinstance(data, dict) or data.get("c") != call_sid:
        raise TokenRejected("stream token is for another call")
    stream = data.get("s", 1)
    return StreamGrant(call_sid=call_sid, config_id=data.get("a"), stream=stream if type(stream) is int else 0)
