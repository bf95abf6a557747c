"""ECS task scale-in protection: ON while the bridge has live calls, OFF when it is idle.

A protected task is not stopped by service auto scaling's scale-in nor by deployments, so neither ever cuts a
call off; an idle task drops the protection so it can be replaced. The ECS agent exposes the switch inside
the task at `$ECS_AGENT_URI/task-protection/v1/state` (PUT `{"ProtectionEnabled": …, "ExpiresInMinutes": …}`).

The call path only flips a boolean (`on_change`); one background task talks to the agent, so a burst of
calls starting and ending collapses into the requests that change the agent's state. Turning OFF waits a
short grace period (the next call often arrives within seconds), ON goes out at once, ON is refreshed well
before it expires on a task that never goes idle, and failures are logged and retried, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from bridge.lifecycle import BridgeState

log = logging.getLogger(__name__)

PROTECTION_PATH = "/task-protection/v1/state"


class TaskProtection:
    def __init__(
        self,
        agent_uri: str,
        *,
        expires_minutes: int = 120,
        refresh_s: float = 3600.0,
        off_delay_s: float = 5.0,
        request_timeout_s: float = 5.0,
        retry_min_s: float = 1.0,
        retry_max_s: float = 60.0,
    ) -> None:
        if urlsplit(agent_uri).scheme not in {"http", "https"}:
            raise ValueError(f"ECS_AGENT_URI must be an http(s) URL, not {agent_uri!r}")
        self.url = agent_uri.rstrip("/") + PROTECTION_PATH
        self.expires_minutes = expires_minutes
        self.refresh_s = refresh_s  # must stay below expires_minutes, or a busy task loses protection
        self.off_delay_s = off_delay_s
        self.request_timeout_s = request_timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.wanted = False
        # What the agent last accepted: a new task starts unprotected; None = unknown after a failed request.
        self.confirmed: bool | None = False
        self.confirmed_at = 0.0
        self.idle_since = 0.0
        self._retry_at = 0.0
        self._retry_wait = retry_min_s
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # --- the listener: synchronous, on the event loop, must never fail the call path ------------------
    def on_change(self, active_calls: int) -> None:
        wanted = active_calls > 0
        if wanted == self.wanted:
            return  # 1 → 2 → 1 calls changes nothing the agent needs to know
        self.wanted = wanted
        if not wanted:
            self.idle_since = time.monotonic()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("task protection: no running event loop, change not sent")
            return
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="ecs-task-protection")
        self._wake.set()

    # --- the worker -----------------------------------------------------------------------------------
    def _plan(self, now: float) -> tuple[bool | None, float | None]:
        """(state to send now, or None) and how long to sleep otherwise (None: until the next change)."""
        if now < self._retry_at:
            return None, self._retry_at - now
        if self.wanted:
            if self.confirmed is not True:
                return True, None
            refresh_at = self.confirmed_at + self.refresh_s
            return (True, None) if now >= refresh_at else (None, refresh_at - now)
        if self.confirmed is False:
            return None, None
        off_at = self.idle_since + self.off_delay_s
        return (False, None) if now >= off_at else (None, off_at - now)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                send, wait_s = self._plan(time.monotonic())
                if send is None:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait_s)
                    continue
                ok = await asyncio.to_thread(self._put, send)
                now = time.monotonic()
                if ok:
                    if send != self.confirmed:
                        log.info("task protection %s", "ON" if send else "OFF")
                    self.confirmed, self.confirmed_at = send, now
                    self._retry_at, self._retry_wait = 0.0, self.retry_min_s
                else:
                    self.confirmed = None  # the agent may or may not have applied it
                    self._retry_at = now + self._retry_wait
                    self._retry_wait = min(self._retry_wait * 2, self.retry_max_s)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the worker alive whatever happens
                log.exception("task protection worker failed; retrying")
                await asyncio.sleep(self.retry_max_s)

    def _put(self, enabled: bool) -> bool:
        """One PUT to the agent (in a worker thread). True when the agent confirmed the new state."""
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.expires_minutes
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url, data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout_s) as response:  # noqa: S310
                raw = response.read(65536)
        except urllib.error.HTTPError as exc:
            try:
                detail = _excerpt(exc.read(2048))
            except OSError:
                detail = ""
            log.warning("task protection %s refused: HTTP %s %s", _word(enabled), exc.code, detail)
            return False
        except (OSError, ValueError) as exc:
            log.warning("task protection %s failed: %s", _word(enabled), exc)
            return False
        try:
            answer = json.loads(raw) if raw.strip() else {}
        except ValueError:
            answer = {}
        # The agent can answer 200 with a `failure` (e.g. TASK_NOT_VALID for a task outside a service).
        problem = (answer.get("failure") or answer.get("error")) if isinstance(answer, dict) else None
        if problem:
            log.warning("task protection %s not applied: %s", _word(enabled), _excerpt(json.dumps(problem).encode()))
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _word(enabled: bool) -> str:
    return "ON" if enabled else "OFF"


def _excerpt(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:300]


def install(state: BridgeState) -> None:
    """Keep task protection in step with `state`'s live calls when running on ECS (`ECS_AGENT_URI` set)."""
    agent_uri = os.environ.get("ECS_AGENT_URI", "")
    if not agent_uri:
        log.debug("ECS_AGENT_URI unset: not on ECS, no task scale-in protection")
        return
    try:
        protection = TaskProtection(agent_uri)
    except ValueError as exc:
        log.error("task protection disabled: %s", exc)
        return
    state.on_change.append(protection.on_change)
    log.info("task scale-in protection follows live calls (%s)", protection.url)
