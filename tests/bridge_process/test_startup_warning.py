"""runbridge says at start-up, in one log line, when calls cannot be answered."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.e2e


def test_warns_when_no_openai_key(start_bridge) -> None:
    bridge = start_bridge(OPENAI_API_KEY="")
    line = bridge.wait_log("calls cannot be answered")
    assert "OPENAI_API_KEY is not set" in line


def test_warns_when_openai_is_unreachable(start_bridge) -> None:
    bridge = start_bridge(OPENAI_API_KEY="sk-test-startup", OPENAI_REALTIME_URL="ws://127.0.0.1:1/v1/realtime")
    log = bridge.wait_log("calls cannot be answered")
    assert "127.0.0.1:1 unreachable" in log and "sk-test-startup" not in log


def test_quiet_when_calls_can_be_answered(start_bridge) -> None:
    first = start_bridge(OPENAI_API_KEY="")  # anything listening will do as the "OpenAI" endpoint
    bridge = start_bridge(OPENAI_API_KEY="sk-test-startup", OPENAI_REALTIME_URL=first.ws)
    bridge.wait_log("bridge serving on")
    time.sleep(1.0)
    assert "calls cannot be answered" not in bridge.stderr()


def test_system_check_warnings_are_json_log_lines_in_production(start_bridge) -> None:
    bridge = start_bridge(
        DJANGO_DEBUG="0", DJANGO_SECRET_KEY="k" * 10 + "Zq3xV9mP2kL7wN4bR8tY6hJ1cF5gD0sAeUiOpQ7vB0a9s8d7f6g5",
        DJANGO_ALLOWED_HOSTS="127.0.0.1", DJANGO_SECURE_SSL_REDIRECT="0", TWILIO_AUTH_TOKEN="t" * 32,
        OPENAI_API_KEY="", STREAM_TOKEN_TTL_S="2",
    )
    bridge.wait_log("calls cannot be answered")
    lines = [json.loads(line) for line in bridge.stderr().splitlines()]  # every line is JSON
    (check,) = [line for line in lines if "voiceops.W002" in line["message"]]
    assert check["level"] == "WARNING" and "STREAM_TOKEN_TTL_S" in check["message"]


def test_a_failing_system_check_stops_the_bridge(start_bridge) -> None:
    bridge = start_bridge(BRIDGE_PUBLIC_URL="ws://127.0.0.1:1/wrong-path", wait=False)
    assert bridge.wait_exit(30) != 0
    assert "voiceops.E004" in bridge.stderr() and "system checks failed" in bridge.stderr()
