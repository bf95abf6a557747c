"""Daphne with the bridge's own SIGTERM/SIGINT handling: drain live calls before the process exits.

Plain daphne lets Twisted stop the reactor on SIGTERM at once, cutting every call off mid-sentence. Here the
first SIGTERM (or Ctrl-C) turns the bridge not-ready (`/readyz` 503, new streams refused), waits for the live
calls to end for up to the drain timeout, ends the rest politely (`BridgeState.drain`), then stops the
reactor: the process exits 0. A second signal stops at once (exit 1); a third exits without cleanup.

Daphne runs Twisted on the asyncio reactor, so the reactor's loop is an ordinary asyncio loop: the signal
handlers and the drain coroutine live on it, next to the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import daphne.server  # installs Twisted's asyncio reactor: it must come before the twisted imports
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import defer, reactor
from twisted.internet import error as twisted_error

from bridge.lifecycle import BridgeState
from bridge.lifecycle import state as bridge_state

log = logging.getLogger(__name__)

# Twilio keeps a call's stream open for the whole call (≤ 60 min: the Realtime session limit, and the
# calls end themselves a few minutes earlier); this only reaps sockets something forgot to close.
WEBSOCKET_TIMEOUT_S = 3700
PING_INTERVAL_S = 20  # keeps the ALB (idle timeout 3600 s) and NATs from dropping a quiet stream
PING_TIMEOUT_S = 30
FORCED_STOP_GRACE_S = 5.0  # after a second signal, how long cancelled calls get before a hard exit
# Twilio's largest message (`start`, with the custom parameters) is a few KB and a media frame ~250 bytes;
# anything near this is not Twilio. Daphne's default is 1 MiB.
MAX_MESSAGE_BYTES = 64 * 1024

EXIT_DRAINED = 0
EXIT_FORCED = 1


def endpoint(host: str, port: int) -> str:
    """A Twisted endpoint description (the form daphne's `-e` takes); IPv6 colons are escaped."""
    interface = host.replace(":", "\\:")
    return f"tcp:port={int(port)}:interface={interface}"


class _WebSocketProtocol(WebSocketProtocol):
    """Daphne 4.2 drops the `reason` of an ASGI `websocket.close`; the bridge's close reasons tell Twilio's
    logs (and tests) why a stream was refused, so pass them on (≤ 123 bytes of UTF-8, the protocol's limit)."""

    def handle_reply(self, message: dict[str, Any]) -> None:
        reason = message.get("reason")
        if message.get("type") == "websocket.close" and reason and self.state != self.STATE_CONNECTING:
            code = message.get("code") or 1000
            self.sendClose(code=code, reason=_truncate_utf8(str(reason), 123))
            return
        super().handle_reply(message)


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode("utf-8", "ignore")


class _DaphneServer(daphne.server.Server):
    def kill_all_applications(self) -> defer.Deferred[object]:
        """Daphne's own version raises KeyError on a connection that has no application yet (an HTTP request
        being upgraded to a WebSocket), which skips the cancelling and leaves call tasks running while the
        loop stops (CPython 3.11 then crashes finalizing them). Cancel every live application instance."""
        pending = [
            instance for details in self.connections.values()
            if (instance := details.get("application_instance")) is not None and not instance.done()
        ]
        for instance in pending:
            instance.cancel()
        if pending:
            log.info("cancelled %d application instance(s) at shutdown", len(pending))
        waiting = defer.Deferred.fromFuture(asyncio.gather(*pending, return_exceptions=True))
        waiting.addErrback(lambda _: None)
        return waiting


class BridgeServer:
    def __init__(
        self,
        application: Callable[..., Any],
        *,
        host: str,
        port: int,
        drain_timeout_s: float,
        state: BridgeState = bridge_state,
        on_start: Iterable[Callable[[], object]] = (),
        on_stop: Iterable[Callable[[], object]] = (),
        root_path: str = "",
    ) -> None:
        self.host, self.port = host, port
        self.drain_timeout_s = drain_timeout_s
        self.state = state
        self.on_start = list(on_start)
        self.on_stop = list(on_stop)
        self.exit_code = EXIT_DRAINED
        self._signals = 0
        self._drain_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.daphne = _DaphneServer(
            application=application,
            endpoints=[endpoint(host, port)],
            signal_handlers=False,  # ours, installed in _ready
            # Behind the ALB: the client address and scheme come from its X-Forwarded-* headers.
            proxy_forwarded_address_header="X-Forwarded-For",
            proxy_forwarded_port_header="X-Forwarded-Port",
            proxy_forwarded_proto_header="X-Forwarded-Proto",
            websocket_timeout=WEBSOCKET_TIMEOUT_S,
            websocket_max_message_size=MAX_MESSAGE_BYTES,
            websocket_max_frame_size=MAX_MESSAGE_BYTES,
            ping_interval=PING_INTERVAL_S,
            ping_timeout=PING_TIMEOUT_S,
            root_path=root_path,
            ready_callable=self._ready,
            server_name="voiceops",
        )

    def run(self) -> int:
        """Serve until a signal ends it; returns the process exit code. Raises OSError when it cannot listen."""
        self.daphne.run()
        if self.daphne.abort_start or not self.daphne.listening_addresses:
            raise OSError(f"could not listen on {self.host}:{self.port}")
        self._finish_leftover_tasks()
        return self.exit_code

    def _finish_leftover_tasks(self) -> None:
        """Background tasks still pending once the reactor stopped (drain, metrics, task protection, a call's
        helpers) are cancelled and awaited, so the interpreter never has to finalize half-run coroutines."""
        loop = asyncio.get_event_loop()
        leftover = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not leftover:
            return
        for task in leftover:
            task.cancel()
        _, still_pending = loop.run_until_complete(asyncio.wait(leftover, timeout=FORCED_STOP_GRACE_S))
        if still_pending:
            log.error("%d task(s) ignored cancellation at exit", len(still_pending))
            _hard_exit(self.exit_code)

    # --- startup: runs just before the reactor (and so the asyncio loop) starts -----------------------
    def _ready(self) -> None:
        self.daphne.ws_factory.protocol = _WebSocketProtocol  # before any connection is accepted
        # Autobahn's default answer to a protocol violation (invalid UTF-8, an oversized message) is to drop
        # the TCP connection; a close frame with 1007/1009 and a reason tells the peer why.
        self.daphne.ws_factory.setProtocolOptions(failByDrop=False)
        loop = asyncio.get_event_loop()  # daphne has made the reactor's loop the current one
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        loop.call_soon(self._started)

    def _started(self) -> None:
        addresses = ", ".join(f"{h}:{p}" for h, p in self.daphne.listening_addresses)
        log.info("bridge serving on %s (pid %d; SIGTERM drains calls for up to %ss)", addresses or "?",
                 os.getpid(), self.drain_timeout_s)
        _run_hooks(self.on_start, "start")

    # --- shutdown -------------------------------------------------------------------------------------
    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_stop(name))
        elif self._signals == 2:
            log.warning("%s again: stopping now, cutting off %d live call(s)", name, self.state.active_calls)
            self.exit_code = EXIT_FORCED
            self._stop_reactor()
        else:
            _hard_exit(EXIT_FORCED)

    async def _drain_then_stop(self, signal_name: str) -> None:
        started = time.monotonic()
        live = self.state.active_calls
        self.state.draining = True  # before the first await: /readyz and new streams see it at once
        log.info("%s: draining started, %d live call(s), waiting up to %ss (signal again to stop now)",
                 signal_name, live, self.drain_timeout_s)
        ended_by_drain = 0
        try:
            ended_by_drain = await self.state.drain(self.drain_timeout_s)
        except Exception:
            log.exception("drain failed; stopping anyway")
        log.info("draining ended after %.1fs: %d call(s) were live, %d ended by the drain, %d left; stopping",
                 time.monotonic() - started, live, ended_by_drain, self.state.active_calls)
        self._stop_reactor()

    def _stop_reactor(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        # Stopping waits for cancelled calls to unwind; never longer than this.
        asyncio.get_running_loop().call_later(FORCED_STOP_GRACE_S, lambda: _hard_exit(self.exit_code))
        drain = self._drain_task
        if drain is not None and not drain.done() and drain is not asyncio.current_task():
            drain.cancel()
        _run_hooks(self.on_stop, "stop")
        with contextlib.suppress(twisted_error.ReactorNotRunning):
            reactor.stop()


def _run_hooks(hooks: Iterable[Callable[[], object]], when: str) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception:
            log.exception("bridge %s hook %r failed", when, hook)


def _hard_exit(code: int) -> None:
    log.error("bridge did not stop in time: exiting without cleanup")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
