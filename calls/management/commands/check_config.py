"""Check the running configuration and print a readable report; exit 1 when a check fails.

    manage.py check_config                       # fails on errors
    manage.py check_config --fail-level warning  # fails on warnings too

The checks themselves live in Django's system check framework (`calls/checks.py`, ids voiceops.*, plus
Django's own); this command runs all of them, with the deployment checks in production mode (DJANGO_DEBUG=0
or VOICEOPS_STAGE not `local`) and the service checks (database, Redis, OpenAI, routing, tools). When the
settings themselves do not load, `manage.py` prints this report's first part instead (voiceops/env.py).
Secrets are never printed: only whether they are set (and, for the OpenAI key, its last four characters).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from calls.checks import check_services, is_production

SYMBOLS = {checks.ERROR: "✗", checks.WARNING: "⚠"}


def secret_hint(value: str) -> str:
    """ "set (sk-…wxyz)": enough to tell two keys apart, never enough to use one."""
    if not value:
        return "not set"
    if len(value) < 20:
        return "set"
    return f"set ({'sk-…' if value.startswith('sk-') else '…'}{value[-4:]})"


def summary() -> list[str]:
    """What this process is configured to use (no secrets)."""
    db = connections["default"].settings_dict
    redis = urlsplit(settings.REDIS_URL)
    return [
        f"database: {connections['default'].vendor} {db.get('HOST') or ''}{'/' if db.get('HOST') else ''}"
        f"{db.get('NAME')}",
        f"channel layer: {f'redis {redis.hostname}:{redis.port or 6379}' if settings.REDIS_URL else 'in-memory'}",
        f"openai: key {secret_hint(settings.OPENAI_API_KEY)}, {settings.OPENAI_REALTIME_URL} "
        f"(model {settings.OPENAI_REALTIME_MODEL})",
        f"twilio: auth token {'set' if settings.TWILIO_AUTH_TOKEN else 'not set'}, webhooks at "
        f"{settings.PUBLIC_WEBHOOK_BASE_URL}/twilio/voice, streams to {settings.BRIDGE_PUBLIC_URL}",
    ]


class Command(BaseCommand):
    help = "Check the running configuration (settings, database, Redis, OpenAI, routing, tools); exit 1 on failure."
    requires_system_checks: list[str] = []  # report problems here, do not stop before the report
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fail-level", choices=["error", "warning"], default="error",
                            help="Lowest level that makes the command exit 1 (default: error).")

    def handle(self, *args: Any, **options: Any) -> None:
        prod = is_production()
        self.stdout.write(f"voiceops configuration — stage {settings.STAGE}, {'production' if prod else 'local'} mode")
        for line in summary():
            self.stdout.write(f"  · {line}")
        found = checks.run_checks(include_deployment_checks=prod, databases=["default"])
        if not prod:  # the service checks are deployment checks; local mode wants them too
            found += check_services(databases=["default"])
        problems = sorted((m for m in found if m.level >= checks.WARNING and not m.is_silenced()),
                          key=lambda m: (-m.level, m.id or ""))
        for message in problems:
            style = self.style.ERROR if message.level >= checks.ERROR else self.style.WARNING
            self.stdout.write(f"  {SYMBOLS[min(message.level, checks.ERROR)]} {message.msg} [{message.id}]",
                              style_func=style)
            if message.hint:
                self.stdout.write(f"      {message.hint}")
        errors = sum(m.level >= checks.ERROR for m in problems)
        warnings = len(problems) - errors
        self.stdout.write(f"{errors} failed, {warnings} warning(s)" if problems else "all checks passed")
        threshold = checks.ERROR if options["fail_level"] == "error" else checks.WARNING
        failing = [m for m in problems if m.level >= threshold]
        if failing:
            raise CommandError(f"{len(failing)} check(s) at or above {options['fail_level']}", returncode=1)
