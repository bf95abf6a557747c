"""Outbound-call fixtures: the local fake of Twilio's REST API on loopback, and a config that may call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from calls import services
from calls.models import AgentConfig, PhoneNumber
from calls.simulators.twilio_rest import TwilioRestFake
from tests.conftest import ACCOUNT_SID, TWILIO_TOKEN

CALLER_ID = "+15005550006"  # Twilio's test number that is valid to call from
CALLEE = "+14155550123"


@pytest.fixture(scope="session")
def twilio_rest_server() -> Iterator[TwilioRestFake]:
    fake = TwilioRestFake(ACCOUNT_SID, TWILIO_TOKEN, numbers=(CALLER_ID,), geo_blocked_prefixes=("+882",))
    fake.start_in_thread()
    yield fake
    fake.stop()


@pytest.fixture
def twilio_rest(twilio_rest_server: TwilioRestFake, twilio_settings) -> TwilioRestFake:
    """The fake, emptied, with the twilio client of calls.outbound pointed at it."""
    twilio_rest_server.calls.clear()
    twilio_rest_server.requests.clear()
    twilio_rest_server.suspended = False
    twilio_settings.TWILIO_API_BASE_URL = twilio_rest_server.url
    return twilio_rest_server


@pytest.fixture
def outbound_config(db) -> AgentConfig:
    config = AgentConfig.objects.create(
        name="Reminders", instructions="You call patients to confirm appointments.", greeting="Hi, it's Acme Dental.",
        is_default=True, calling_hours_start=0, calling_hours_end=24, calling_time_zone="America/New_York",
        max_concurrent_outbound=2,
    )
    config.tools.set(services.ensure_builtin_tools())
    PhoneNumber.objects.create(number=CALLER_ID, agent_config=config)
    return config
