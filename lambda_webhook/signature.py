"""X-Twilio-Signature checks, with the twilio library's RequestValidator.

Twilio signs the public URL it called. Behind API Gateway, a load balancer or CloudFront the Host header
and the path the function sees can differ from it, so the URL is rebuilt from PUBLIC_WEBHOOK_BASE_URL.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables
from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)


def public_url(request: HttpRequest) -> str:
    query = request.META.get("QUERY_STRING", "")
    return settings.PUBLIC_WEBHOOK_BASE_URL + request.path + (f"?{query}" if query else "")


@sensitive_variables("token")
def is_authentic(request: HttpRequest) -> bool:
    """True when the request carries a valid signature, or when local mode runs without a Twilio token."""
    token = settings.TWILIO_AUTH_TOKEN
    if not token:
        # Unsigned requests are accepted only in local debug mode; production settings require the token.
        return bool(settings.DEBUG)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    params = {k: request.POST.get(k) for k in request.POST}
    return RequestValidator(token).validate(public_url(request), params, signature)
