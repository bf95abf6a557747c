"""Shared fixtures. Tests use real PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set (CI sets them),
and SQLite plus the in-memory channel layer otherwise; tests that need the real services say so and skip."""

from __future__ import annotations

import itertools
import os

import pytest
from django.conf import settings

from calls import services
from calls.models import AgentConfig

TWILIO_TOKEN = "test-twilio-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "0" * 32


def pytest_report_header(config: pytest.Config) -> list[str]:
    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    return [f"voiceops: database={db} channel layer={layer}"]


@pytest.fixture
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.PUBLIC_WEBHOOK_BASE_URL = "https://hooks.example.com"
    settings.BRIDGE_PUBLIC_URL = "wss://bridge.example.com/media-stream"
    settings.OPENAI_API_KEY = "sk-test-key"
    return settings


_sids = itertools.count(1)


def new_call_sid() -> str:
    """A unique, well-formed Twilio call SID."""
    return f"CA{next(_sids):032x}"


@pytest.fixture
def default_config(db: None) -> AgentConfig:
    """The default agent config, with its first revision."""
    config = AgentConfig.objects.create(
        name="Front desk", instructions="You answer the phone for Example Dental.", greeting="Hello!",
        is_default=True,
    )
    services.record_revision(config)
    return config


requires_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="needs PostgreSQL: set DATABASE_URL=postgres://… (CI does)",
)
requires_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="needs Redis: set REDIS_URL=redis://… (CI does)"
)


# One call's summed response.done usage with every detail: the cost tests' common example. Uncached text 300 and
# audio 400, cached text 100 and audio 200, output text 100 and audio 400 (gpt-realtime-2.1: $0.04212).
DETAILED_USAGE = {
    "input_tokens": 1000,
    "output_tokens": 500,
    "total_tokens": 1500,
    "input_token_details": {
        "text_tokens": 400,
        "audio_tokens": 600,
        "cached_tokens": 300,
        "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 200},
    },
    "output_token_details": {"text_tokens": 100, "audio_tokens": 400},
}
