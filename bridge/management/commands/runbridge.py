"""`manage.py runbridge`: serve `voiceops.asgi:application` with daphne, draining live calls on SIGTERM.

The bridge image runs it on ECS behind the ALB; `make run` runs it locally. See `bridge.server` for the
signal handling and `bridge.metrics` for the metrics. There is no ECS task scale-in protection: the task drains
by ALB deregistration, which never blocks a deployment (deploy/cdk/tests/test_drain_model.py).
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bridge.lifecycle import state
from bridge.metrics import CallMetrics
from bridge.server import BridgeServer


class Command(BaseCommand):
    help = (
        "Serve the ASGI app (Django + the media bridge) with daphne. SIGTERM or Ctrl-C drains live calls for up to "
        "DRAIN_TIMEOUT_S seconds, then exits; a second signal stops at once."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default=None,
                            help="Interface to listen on (default: 127.0.0.1 when DEBUG, else 0.0.0.0).")
        parser.add_argument("--port", type=int, default=None, help="Port to listen on (default: $PORT).")
        parser.add_argument(
            "--metrics", action=argparse.BooleanOptionalAction, default=None,
            help="Print CloudWatch EMF metric lines (ActiveCalls…) on stdout (default: on unless DEBUG).",
        )

    def handle(self, *args: Any, host: str | None, port: int | None, metrics: bool | None, **options: Any) -> None:
        if host is None:
            # In a container the ALB reaches the task on its own address; locally stay on loopback.
            host = "127.0.0.1" if settings.DEBUG else "0.0.0.0"  # noqa: S104
        port = settings.PORT if port is None else port
        if not 0 < port < 65536:
            raise CommandError(f"invalid port {port}")

        from voiceops.asgi import application  # imported here: it builds the whole app (and the bridge)

        if settings.DEBUG and apps.is_installed("django.contrib.staticfiles"):
            # As daphne's runserver does: static files straight from the finders while developing.
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
