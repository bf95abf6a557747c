"""runbridge says at start-up, in one log line, when calls cannot be answered."""

from __future__ import annotations

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
