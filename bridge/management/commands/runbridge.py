"""`manage.py runbridge`: serve `voiceops.asgi:application` with uvicorn, draining live calls on SIGTERM.

The bridge image runs it on ECS behind the ALB; `make run` runs it locally. See `bridge.server` for the
signal handling and `bridge.metrics` for the metrics. There is no ECS task scale-in protection: the task drains
by ALB deregistration, which never blocks a deployment (deploy/cdk/tests/test_drain_model.py).
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import threading
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bridge.lifecycle import state
from bridge.metrics import CallMetrics
from bridge.server import BridgeServer
from calls.checks import answering_problems

log = logging.getLogger("bridge.startup")


def report_system_checks() -> None:
    """Django's system checks, reported through logging (JSON lines in production) rather than as the plain
    text block Django prints; an error stops the bridge before it serves."""
    from django.core import checks

    problems = [m for m in checks.run_checks() if m.level >= checks.WARNING and not m.is_silenced()]
    for message in problems:
        hint = f" ({message.hint})" if message.hint else ""
        log.log(logging.ERROR if message.is_serious() else logging.WARNING, "system check %s: %s%s",
                message.id, message.msg, hint)
    if any(message.is_serious() for message in problems):
        raise CommandError("system checks failed: see the lines above (manage.py check_config says more)")


def warn_if_calls_cannot_be_answered() -> None:
    """One warning line per reason calls would not reach the agent (no key, OpenAI unreachable)."""
    for problem in answering_problems():
        log.warning("calls cannot be answered: %s", problem)


class Command(BaseCommand):
    help = (
        "Serve the ASGI app (Django + the media bridge) with uvicorn. SIGTERM or Ctrl-C drains live calls for up to "
        "DRAIN_TIMEOUT_S seconds, then exits; a second signal stops at once."
    )

    requires_system_checks: list[str] = []  # run in handle(), reported through logging

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default=None,
                            help="Interface to listen on (default: 127.0.0.1 when DEBUG, else 0.0.0.0).")
        parser.add_argument("--port", type=int, default=None, help="Port to listen on (default: $PORT).")
        parser.add_argument(
            "--metrics", action=argparse.BooleanOptionalAction, default=None,
            help="Print CloudWatch EMF metric lines (ActiveCalls…) on stdout (default: on unless DEBUG).",
        )

    def handle(self, *args: Any, host: str | None, port: int | None, metrics: bool | None, **options: Any) -> None:
        report_system_checks()
        if host is None:
            # In a container the ALB reaches the task on its own address; locally stay on loopback.
            host = "127.0.0.1" if settings.DEBUG else "0.0.0.0"  # noqa: S104
        port = settings.PORT if port is None else port
        if not 0 < port < 65536:
            raise CommandError(f"invalid port {port}")

        from voiceops.asgi import application  # imported here: it builds the whole app (and the bridge)

        if settings.DEBUG and apps.is_installed("django.contrib.staticfiles"):
            # As runserver does: static files straight from the finders while developing.
            from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

            application = ASGIStaticFilesHandler(application)

        on_start: list[Any] = []
        on_stop: list[Any] = []
        if metrics if metrics is not None else not settings.DEBUG:
            call_metrics = CallMetrics(
                settings.METRICS_NAMESPACE, settings.STAGE, instance_id=settings.BRIDGE_INSTANCE_ID
            )
            state.on_change.append(call_metrics.on_change)
            on_start.append(call_metrics.start)
            # A last line with the final counters; no gauge point, which would skew that minute's average.
            on_stop += [functools.partial(call_metrics.emit, gauge=False), call_metrics.stop]
        # The reachability probe may take a couple of seconds: never delay serving for it.
        threading.Thread(target=warn_if_calls_cannot_be_answered, name="answering-check", daemon=True).start()

        server = BridgeServer(
            application, host=host, port=port, drain_timeout_s=settings.DRAIN_TIMEOUT_S, state=state,
            on_start=on_start, on_stop=on_stop, root_path=getattr(settings, "FORCE_SCRIPT_NAME", None) or "",
        )
        try:
            exit_code = server.run()
        except OSError as exc:
            raise CommandError(str(exc)) from exc
        if exit_code:
            sys.exit(exit_code)
