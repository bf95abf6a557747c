"""/healthz (the process lives) and /readyz (it takes calls: not draining, its dependencies answer).

/healthz is what the ALB and ECS health checks ask, and a failing check makes ECS replace the task with its
calls: so it is liveness only, never dependency status (a database or Redis failover must not fail every
task), and cheap (no database, no Redis). /readyz is for people and routing probes, never the ALB check.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from bridge.event_sink import sink
from bridge.lifecycle import state

log = logging.getLogger(__name__)
_CHECK_TTL_S = 5.0
_last_check: tuple[float, dict[str, str]] = (0.0, {})


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "active_calls": state.active_calls, "pending_events": sink.pending})


def _check_dependencies() -> dict[str, str]:
    """Database and Redis, cached for a few seconds so load balancer probes stay cheap."""
    global _last_check
    now = time.monotonic()
    if now - _last_check[0] < _CHECK_TTL_S:
        return _last_check[1]
    failures: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        failures["database"] = type(exc).__name__
    finally:
        connection.close_if_unusable_or_obsolete()
    if settings.REDIS_URL:
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()
        except redis.RedisError as exc:
            failures["redis"] = type(exc).__name__
    _last_check = (now, failures)
    return failures


def readyz(request: HttpRequest) -> JsonResponse:
    if state.draining:
        return JsonResponse({"status": "draining", "active_calls": state.active_calls}, status=503)
    failures = _check_dependencies()
    if failures:
        log.warning("not ready: %s", ", ".join(f"{k}={v}" for k, v in failures.items()))
        return JsonResponse({"status": "unavailable", "failing": sorted(failures)}, status=503)
    return JsonResponse({"status": "ready", "active_calls": state.active_calls})
