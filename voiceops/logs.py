"""Logging for every process: plain lines locally, one JSON object per line in production (DJANGO_DEBUG=0).

Each line carries `time`, `level`, `logger`, `message` and, where known, `call_sid`, `stream_sid` and
`request_id`. Those come from a context variable (`bind`) that the webhook, the HTTP middleware and the
bridge's stream start set, never from parsing messages. Messages and tracebacks go through
`redact.scrub_text` (E.164 numbers masked, bearer and OpenAI keys hidden) on the way out.

Log one line per lifecycle step of a call (start, connect, tool call, end), never per audio frame.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from voiceops.redact import scrub_text

CONTEXT_FIELDS = ("call_sid", "stream_sid", "request_id")
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("voiceops_log_context",
                                                                                   default=None)


def bind(**fields: str) -> None:
    """Add fields (call_sid, stream_sid, request_id) to every later line of this task or request."""
    current = _context.get() or {}
    _context.set({**current, **{k: v for k, v in fields.items() if v}})


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (a field passed in `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not getattr(record, name, None):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: CloudWatch Logs Insights reads the fields without a parse rule."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub_text(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    """Local mode: readable lines, the call SID in front when known, numbers masked all the same."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


def logging_config(json_lines: bool, level: str) -> dict[str, Any]:
    """The LOGGING setting: everything to stderr through one handler, JSON lines when `json_lines`."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"json": {"()": JsonFormatter}, "plain": {"()": PlainFormatter}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json" if json_lines else "plain",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own request logger repeats what the views log; daphne logs every access otherwise.
            "django": {"handlers": ["console"], "level": level, "propagate": False},
            "django.channels.server": {"level": "WARNING"},
            "daphne": {"level": "WARNING"},
        },
    }


def configure(config: dict[str, Any]) -> None:
    """LOGGING_CONFIG: Django's dictConfig, plus Python warnings through the same handler (a bare warning on
    stderr would be the one line that is not JSON)."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


def request_id_from(request: Any) -> str:
    """The id the edge gave this request (API Gateway's, through Mangum; an ALB's or a proxy's), else a new one."""
    event = (getattr(request, "scope", None) or {}).get("aws.event") or {}
    value = (event.get("requestContext") or {}).get("requestId")
    for name in ("X-Request-Id", "X-Amzn-Trace-Id"):
        value = value or request.headers.get(name)
    return str(value)[:100] if value else uuid.uuid4().hex[:16]


class RequestContextMiddleware:
    """Binds `request_id` for every line logged while an HTTP request is handled."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        token = _context.set({"request_id": request_id_from(request)})
        try:
            return self.get_response(request)
        finally:
            _context.reset(token)
