from __future__ import annotations

import os
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connections

from calls import services
from calls.models import AgentConfig, PhoneNumber, Tool

pytestmark = pytest.mark.django_db

OPENAI_KEY = "sk-proj-0123456789abcdefghijklmnopqrstuvwxyzWXYZ"
TWILIO_TOKEN = "f00dfeedf00dfeedf00dfeedf00d4242"
STRONG_KEY = "Zq3#xV9!mP2$kL7@wN4%bR8^tY6&hJ1*cF5(gD0)sA-eU+iO_pQ7~vB"  # 55 varied characters


def report(*args: str) -> tuple[list[str], int]:
    """The report's lines and the exit code (0, or the CommandError's returncode)."""
    buffer = StringIO()
    try:
        call_command("check_config", *args, stdout=buffer)
    except CommandError as failure:
        code = failure.returncode
    else:
        code = 0
    return [line.strip() for line in buffer.getvalue().splitlines()], code


def line_for(lines: list[str], name: str) -> str:
    (line,) = [line for line in lines if line[2:].startswith(f"{name}:")]
    return line


@pytest.fixture
def local(settings):
    settings.DEBUG = True  # pytest-django runs tests with DEBUG off; local mode is DEBUG on
    settings.STAGE = "local"
    settings.OPENAI_API_KEY = ""
    settings.TWILIO_AUTH_TOKEN = ""
    settings.TWILIO_ACCOUNT_SID = ""
    settings.REDIS_URL = ""
    return settings


@pytest.fixture
def production(settings):
    """A well-configured production deployment; tests spoil one thing at a time."""
    settings.DEBUG = False
    settings.STAGE = "prod"
    settings.SECRET_KEY = STRONG_KEY
    settings.ALLOWED_HOSTS = ["voice.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://voice.example.com"]
    settings.OPENAI_API_KEY = OPENAI_KEY
    settings.OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime"
    settings.TWILIO_ACCOUNT_SID = "AC" + "a" * 32
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.PUBLIC_WEBHOOK_BASE_URL = "https://hooks.example.com"
    settings.BRIDGE_PUBLIC_URL = "wss://bridge.example.com/media-stream"
    settings.REDIS_URL = ""
    return settings


def test_local_defaults_pass_with_warnings(default_config, local):
    lines, code = report()

    assert code == 0
    assert "local mode" in lines[0]
    assert line_for(lines, "OPENAI_API_KEY").startswith("⚠")
    assert line_for(lines, "TWILIO_AUTH_TOKEN").startswith("⚠")
    assert not [line for line in lines if line.startswith("✗")]
    assert lines[-1] == "0 failed, 2 warning(s)"


def test_fail_level_warning_turns_warnings_into_exit_1(default_config, local):
    assert report("--fail-level", "warning")[1] == 1


def test_good_production_passes_and_never_prints_secrets(default_config, production):
    lines, code = report()
    text = "\n".join(lines)

    assert code == 0, text
    assert "production mode" in lines[0]
    assert not any(line.startswith("✗") for line in lines)
    assert any(line.startswith("· openai: key set (sk-…WXYZ)") for line in lines)
    assert any(line.startswith("· twilio: auth token set,") for line in lines)
    for secret in (OPENAI_KEY, OPENAI_KEY[3:-4], TWILIO_TOKEN, STRONG_KEY):
        assert secret not in text


def test_debug_on_outside_local_stage_counts_as_production(default_config, production):
    production.DEBUG = True

    lines, code = report()

    assert code == 1
    assert "production mode" in lines[0]
    assert line_for(lines, "DJANGO_DEBUG") == "✗ DJANGO_DEBUG: on in stage 'prod': set DJANGO_DEBUG=0 [voiceops.E101]"


@pytest.mark.parametrize(
    ("setting", "value", "name", "reason"),
    [
        ("ALLOWED_HOSTS", ["*"], "DJANGO_ALLOWED_HOSTS", "accepts any Host"),
        ("ALLOWED_HOSTS", [], "DJANGO_ALLOWED_HOSTS", "empty"),
        ("ALLOWED_HOSTS", ["a.example.com", " b.example.com"], "DJANGO_ALLOWED_HOSTS", "never match"),
        ("OPENAI_API_KEY", "", "OPENAI_API_KEY", "not set"),
        ("OPENAI_REALTIME_URL", "ws://127.0.0.1:9/v1/realtime", "OPENAI_REALTIME_URL", "not wss"),
        ("OPENAI_LIVE_URL", "ws://127.0.0.1:9/v1/live", "OPENAI_LIVE_URL", "not wss"),
        ("TWILIO_API_BASE_URL", "http://127.0.0.1:9", "TWILIO_API_BASE_URL", "not https"),
        ("TWILIO_AUTH_TOKEN", "", "TWILIO_AUTH_TOKEN", "not set"),
        ("TWILIO_ACCOUNT_SID", "PN123", "TWILIO_ACCOUNT_SID", "not an account SID"),
        ("PUBLIC_WEBHOOK_BASE_URL", "http://hooks.example.com", "PUBLIC_WEBHOOK_BASE_URL", "not https"),
        ("PUBLIC_WEBHOOK_BASE_URL", "https://hooks.example.com?x=1", "PUBLIC_WEBHOOK_BASE_URL", "query"),
        ("BRIDGE_PUBLIC_URL", "ws://bridge.example.com/media-stream", "BRIDGE_PUBLIC_URL", "not wss"),
        ("BRIDGE_PUBLIC_URL", "wss://bridge.example.com/stream", "BRIDGE_PUBLIC_URL", "does not end in"),
        ("BRIDGE_PUBLIC_URL", "wss://b.example.com/media-stream?x=1", "BRIDGE_PUBLIC_URL", "no query string"),
        ("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0", "Redis", "127.0.0.1:1 unreachable"),
    ],
)
def test_each_production_rule(default_config, production, setting, value, name, reason):
    setattr(production, setting, value)

    lines, code = report()

    assert code == 1
    line = line_for(lines, name)
    assert line.startswith("✗"), line
    assert reason in line and "[voiceops." in line
    assert "hunter2" not in "\n".join(lines)


def test_weak_secret_key_is_djangos_own_warning(default_config, production):
    production.SECRET_KEY = "django-insecure-" + "x" * 60
    lines, code = report("--fail-level", "warning")
    assert code == 1
    assert any(line.startswith("⚠") and "[security.W009]" in line for line in lines)


def test_webhook_base_ending_in_twilio_is_a_warning(default_config, production):
    production.PUBLIC_WEBHOOK_BASE_URL = "https://hooks.example.com/twilio"

    lines, code = report()

    assert code == 0
    assert line_for(lines, "PUBLIC_WEBHOOK_BASE_URL").startswith("⚠")


def test_unreachable_openai_is_a_warning(default_config, production):
    production.OPENAI_REALTIME_URL = "wss://127.0.0.1:1/v1/realtime"  # nothing listens on port 1

    lines, _ = report()

    assert "127.0.0.1:1 unreachable" in line_for(lines, "OpenAI")


def test_active_number_routed_to_an_inactive_config_fails(default_config, local):
    closed = AgentConfig.objects.create(name="Closed line", instructions="x", is_active=False)
    PhoneNumber.objects.create(number="+14155550111", agent_config=closed)
    PhoneNumber.objects.create(number="+14155550112", agent_config=default_config)
    PhoneNumber.objects.create(number="+14155550113", agent_config=closed, is_active=False)

    lines, code = report()

    assert code == 1
    line = line_for(lines, "Phone numbers")
    assert line == "✗ Phone numbers: routed to inactive configs: +14155550111 → Closed line [voiceops.E206]"


def test_missing_or_inactive_default_config(default_config, local):
    default_config.is_active = False
    default_config.save()
    lines, code = report()
    assert code == 1
    assert line_for(lines, "Default agent config") == "✗ Default agent config: 'Front desk' is inactive [voiceops.E205]"

    AgentConfig.objects.all().update(is_default=False)
    lines, code = report()
    assert code == 1
    assert line_for(lines, "Default agent config").startswith("✗ Default agent config: none")


def test_tool_urls_and_secrets(default_config, local, monkeypatch):
    # .create() skips form validation, as an old row or a raw import could.
    Tool.objects.create(name="crm_lookup", description="x", url="http://crm.example.com/lookup")
    Tool.objects.create(
        name="booking", description="x", url="https://book.example.com", secret_header_name="X-Key"
    )
    Tool.objects.create(name="old", description="x", url="http://old.example.com", is_active=False)
    monkeypatch.delenv("TOOL_SECRET_BOOKING", raising=False)

    lines, code = report()

    assert code == 1
    assert line_for(lines, "Tool URLs") == (
        "✗ Tool URLs: crm_lookup (http://crm.example.com/lookup: Tool URLs must use https) [voiceops.E207]"
    )
    assert line_for(lines, "Tool secrets") == (
        "⚠ Tool secrets: not in this environment: TOOL_SECRET_BOOKING [voiceops.W206]"
    )

    monkeypatch.setenv("TOOL_SECRET_BOOKING", "s3cret")
    lines, _ = report()
    assert not [line for line in lines if "Tool secrets" in line]


def test_transfer_tool_without_a_number_is_a_warning(default_config, local):
    default_config.tools.set(services.ensure_builtin_tools())

    lines, _ = report()

    assert line_for(lines, "Transfers").startswith("⚠")


def test_unreachable_database_is_reported_not_raised(default_config, local, monkeypatch):
    def refuse() -> None:
        raise OperationalError('connection to server at "db.internal", port 5432 failed: Connection refused')

    monkeypatch.setattr(connections["default"], "ensure_connection", refuse)
    lines, code = report()

    assert code == 1
    assert "Connection refused" in line_for(lines, "Database")
    assert "✗ Agent configs and tools: not checked: the database is unreachable [voiceops.E202]" in lines


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL unset: no Redis to reach")
def test_reachable_redis(default_config, production):
    production.REDIS_URL = os.environ["REDIS_URL"]

    lines, _ = report()

    assert not [line for line in lines if line[2:].startswith("Redis:")]
    assert any(line.startswith("· channel layer: redis ") for line in lines)


def test_tool_urls_naming_internal_addresses_are_flagged(default_config, local):
    local.TOOL_ALLOWED_PRIVATE_HOSTS = []
    Tool.objects.create(name="metadata", description="x", url="https://169.254.169.254/latest/meta-data/")

    lines, code = report()

    assert code == 1
    assert "metadata (https://169.254.169.254/latest/meta-data/: Tool URLs must reach a public server)" in (
        line_for(lines, "Tool URLs"))
