"""Requests over Django's body-size or field-count limits never show the Twilio auth token, even on the debug
error page (the signature check used to hold the token in a local variable while the form was read)."""

from __future__ import annotations

import pytest

from tests.conftest import TWILIO_TOKEN

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug_twilio(twilio_settings):
    twilio_settings.DEBUG = True  # the debug page shows each frame's local variables
    twilio_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 50
    twilio_settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    return twilio_settings


@pytest.mark.parametrize(
    "form",
    [
        {f"f{i}": "x" for i in range(60)},  # over the field-count limit
        {"CallSid": "CA" + "1" * 32, "pad": "x" * 20_000},  # over the body-size limit
    ],
    ids=["too-many-fields", "too-big"],
)
@pytest.mark.parametrize("path", ["/twilio/voice", "/twilio/status", "/twilio/stream-ended"])
def test_oversized_signed_request_is_a_400_without_the_token(client, debug_twilio, form, path):
    response = client.post(path, form, HTTP_X_TWILIO_SIGNATURE="anything")
    assert response.status_code == 400
    assert TWILIO_TOKEN.encode() not in response.content
