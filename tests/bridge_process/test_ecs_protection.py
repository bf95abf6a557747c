"""Task scale-in protection against a fake ECS agent on loopback: ON with live calls, OFF when idle."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bridge import ecs_protection
from bridge.ecs_protection import TaskProtection
from bridge.lifecycle import BridgeState
from tests.bridge_process.conftest import FakeAgent


def protection(agent: FakeAgent, **kw: float) -> TaskProtection:
    options = {"off_delay_s": 0.05, "retry_min_s": 0.05, "retry_max_s": 0.2, "request_timeout_s": 2.0, **kw}
    return TaskProtection(agent.url, **options)  # type: ignore[arg-type]


async def wait_puts(agent: FakeAgent, count: int, timeout_s: float = 5.0) -> list[bool]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(agent.states()) >= count:
            return agent.states()
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} PUT(s), got {agent.states()}")


async def wait_confirmed(tp: TaskProtection, expected: bool | None, timeout_s: float = 5.0) -> None:
    """The fake agent records a PUT before the client has read its answer: poll rather than race it."""
    deadline = time.monotonic() + timeout_s
    while tp.confirmed is not expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert tp.confirmed is expected


async def test_on_with_calls_off_when_idle(fake_agent: FakeAgent) -> None:
    tp = protection(fake_agent)
    tp.on_change(1)
    assert await wait_puts(fake_agent, 1) == [True]
    assert fake_agent.puts[0] == {"ProtectionEnabled": True, "ExpiresInMinutes": 120}
    tp.on_change(0)
    assert await wait_puts(fake_agent, 2) == [True, False]
    assert fake_agent.puts[1] == {"ProtectionEnabled": False}
    await wait_confirmed(tp, False)
    await tp.close()


async def test_more_calls_change_nothing(fake_agent: FakeAgent) -> None:
    tp = protection(fake_agent)
    for count in (1, 2, 3, 2, 1, 2):
        tp.on_change(count)
    await wait_puts(fake_agent, 1)
    await asyncio.sleep(0.3)
    assert fake_agent.states() == [True]
    await tp.close()


async def test_flapping_within_the_grace_period_keeps_protection(fake_agent: FakeAgent) -> None:
    tp = protection(fake_agent, off_delay_s=0.5)
    tp.on_change(1)
    await wait_puts(fake_agent, 1)
    for _ in range(5):  # calls ending and starting in quick succession
        tp.on_change(0)
        await asyncio.sleep(0.02)
        tp.on_change(1)
    await asyncio.sleep(0.8)
    assert fake_agent.states() == [True]
    tp.on_change(0)
    assert await wait_puts(fake_agent, 2, timeout_s=3) == [True, False]
    await tp.close()


async def test_off_waits_for_the_grace_period(fake_agent: FakeAgent) -> None:
    tp = protection(fake_agent, off_delay_s=0.4)
    tp.on_change(1)
    await wait_puts(fake_agent, 1)
    idle_at = time.monotonic()
    tp.on_change(0)
    await wait_puts(fake_agent, 2)
    assert time.monotonic() - idle_at >= 0.35
    await tp.close()


async def test_burst_while_a_request_is_in_flight_is_coalesced(fake_agent: FakeAgent) -> None:
    fake_agent.delay_s = 0.3
    tp = protection(fake_agent, off_delay_s=0.0)
    tp.on_change(1)
    await asyncio.sleep(0.05)  # the ON request is in flight
    tp.on_change(0)
    tp.on_change(1)  # wanted is ON again before the worker looks: nothing more to send
    await asyncio.sleep(0.8)
    assert fake_agent.states() == [True]
    await tp.close()


async def test_listener_is_fast_even_when_the_agent_is_slow(fake_agent: FakeAgent) -> None:
    fake_agent.delay_s = 1.0
    tp = protection(fake_agent)
    started = time.perf_counter()
    tp.on_change(1)
    tp.on_change(0)
    tp.on_change(1)
    assert time.perf_counter() - started < 0.01
    ticks = 0
    for _ in range(10):  # the event loop keeps running while the PUT waits on the agent
        await asyncio.sleep(0.02)
        ticks += 1
    assert ticks == 10 and fake_agent.states() == []
    await wait_puts(fake_agent, 1)
    await tp.close()


async def test_refreshes_before_expiry_while_busy(fake_agent: FakeAgent) -> None:
    tp = protection(fake_agent, refresh_s=0.2)
    tp.on_change(1)
    states = await wait_puts(fake_agent, 3, timeout_s=3)
    assert states[:3] == [True, True, True]
    tp.on_change(0)
    await asyncio.sleep(0.5)
    assert fake_agent.states()[-1] is False
    count = len(fake_agent.states())
    await asyncio.sleep(0.5)
    assert len(fake_agent.states()) == count  # idle: no refreshes
    await tp.close()


async def test_http_errors_are_retried_and_never_raised(
    fake_agent: FakeAgent, caplog: pytest.LogCaptureFixture
) -> None:
    fake_agent.answers = [(500, {"error": "agent busy"}), (503, {"error": "still busy"})]
    tp = protection(fake_agent)
    with caplog.at_level(logging.WARNING, logger="bridge.ecs_protection"):
        tp.on_change(1)  # must not raise
        assert await wait_puts(fake_agent, 3) == [True, True, True]
    await wait_confirmed(tp, True)
    assert "HTTP 500" in caplog.text and "HTTP 503" in caplog.text
    await tp.close()


async def test_failure_in_a_200_answer_is_not_success(fake_agent: FakeAgent, caplog: pytest.LogCaptureFixture) -> None:
    fake_agent.answers = [(200, {"failure": {"Arn": "arn:x", "Reason": "TASK_NOT_VALID", "Detail": None}})]
    tp = protection(fake_agent)
    with caplog.at_level(logging.WARNING, logger="bridge.ecs_protection"):
        tp.on_change(1)
        assert await wait_puts(fake_agent, 2) == [True, True]
    assert "TASK_NOT_VALID" in caplog.text
    await wait_confirmed(tp, True)
    await tp.close()


async def test_failed_on_then_idle_still_sends_off(fake_agent: FakeAgent) -> None:
    """After a failed ON the agent's state is unknown: going idle must still send OFF."""
    fake_agent.answers = [(500, {"error": "boom"})]
    tp = protection(fake_agent, retry_min_s=0.3)
    tp.on_change(1)
    await wait_puts(fake_agent, 1)
    tp.on_change(0)
    assert await wait_puts(fake_agent, 2) == [True, False]
    await asyncio.sleep(0.4)
    assert fake_agent.states() == [True, False] and tp.confirmed is False
    await tp.close()


async def test_unreachable_agent_is_tolerated(caplog: pytest.LogCaptureFixture) -> None:
    from tests.servers import free_port

    tp = TaskProtection(f"http://127.0.0.1:{free_port()}", retry_min_s=0.05, retry_max_s=0.1, request_timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="bridge.ecs_protection"):
        tp.on_change(1)
        await asyncio.sleep(0.5)
    assert tp.confirmed is None
    assert "task protection ON failed" in caplog.text
    assert tp._task is not None and not tp._task.done()  # still trying
    await tp.close()


async def test_state_listener_end_to_end(fake_agent: FakeAgent) -> None:
    """Through BridgeState: add → ON, discard of the last call → OFF."""
    state = BridgeState()
    tp = protection(fake_agent)
    state.on_change.append(tp.on_change)

    class Call:
        async def end_politely(self, reason: str) -> None: ...

    a, b = Call(), Call()
    state.add(a)
    state.add(b)
    state.discard(a)
    assert await wait_puts(fake_agent, 1) == [True]
    state.discard(b)
    assert await wait_puts(fake_agent, 2) == [True, False]
    await tp.close()


def test_install_only_on_ecs(monkeypatch: pytest.MonkeyPatch, fake_agent: FakeAgent) -> None:
    state = BridgeState()
    monkeypatch.delenv("ECS_AGENT_URI", raising=False)
    ecs_protection.install(state)
    assert state.on_change == []
    monkeypatch.setenv("ECS_AGENT_URI", "file:///etc/passwd")
    ecs_protection.install(state)
    assert state.on_change == []
    monkeypatch.setenv("ECS_AGENT_URI", fake_agent.url)
    ecs_protection.install(state)
    assert len(state.on_change) == 1
    listener = state.on_change[0]
    assert isinstance(listener.__self__, TaskProtection)  # type: ignore[attr-defined]
    assert listener.__self__.url == fake_agent.url + "/task-protection/v1/state"  # type: ignore[attr-defined]


def test_listener_without_a_loop_does_not_raise(fake_agent: FakeAgent) -> None:
    tp = protection(fake_agent)
    tp.on_change(1)  # no running loop here: logged, not raised
    assert tp.wanted is True
