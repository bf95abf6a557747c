"""Check the running configuration and print a readable report; exit 1 when a check fails.

    manage.py check_config                       # fails on errors
    manage.py check_config --fail-level warning  # fails on warnings too

Production rules apply when DJANGO_DEBUG=0 or VOICEOPS_STAGE is not `local`. Secrets are never printed:
only whether they are set (and, for the OpenAI key, its last four characters).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from calls.models import AgentConfig, PhoneNumber, Tool
from calls.validators import validate_https_url

OK, WARNING, ERROR = "ok", "warning", "error"
SYMBOLS = {OK: "✓", WARNING: "⚠", ERROR: "✗"}
SEVERITY = {OK: 0, WARNING: 1, ERROR: 2}
STREAM_PATH = "/media-stream"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: str
    detail: str

    @property
    def line(self) -> str:
        return f"{SYMBOLS[self.level]} {self.name}: {self.detail}"


def is_production() -> bool:
    return not settings.DEBUG or settings.STAGE != "local"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _secret_hint(value: str) -> str:
    """ "set (sk-…wxyz)": enough to tell two keys apart, never enough to use one."""
    if len(value) < 20:
        return "set"
    prefix = "sk-…" if value.startswith("sk-") else "…"
    return f"set ({prefix}{value[-4:]})"


# --- settings ------------------------------------------------------------------------------------


def check_secret_key(prod: bool) -> Check:
    key = settings.SECRET_KEY
    if not prod:
        return Check("Secret key", OK, "local mode (a random key per run unless DJANGO_SECRET_KEY is set)")
    # The same bar as Django's security.W009.
    if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure"):
        return Check("Secret key", ERROR, "too weak for production: use 50+ random, varied characters")
    return Check("Secret key", OK, "set, 50+ varied characters")


def check_debug(prod: bool) -> Check:
    if not settings.DEBUG:
        return Check("DEBUG", OK, "off")
    if prod:
        return Check("DEBUG", ERROR, f"on in stage {settings.STAGE!r}: set DJANGO_DEBUG=0")
    return Check("DEBUG", OK, "on (local mode)")


def check_allowed_hosts(prod: bool) -> Check:
    hosts = list(settings.ALLOWED_HOSTS)
    padded = [h for h in hosts if h != h.strip() or not h]
    if padded:
        return Check(
            "Allowed hosts", ERROR, f"entries with spaces or empty: {padded!r} never match a request"
        )
    if prod and not hosts:
        return Check("Allowed hosts", ERROR, "empty: set DJANGO_ALLOWED_HOSTS")
    if prod and "*" in hosts:
        return Check("Allowed hosts", ERROR, "'*' accepts any Host header: list the real host names")
    return Check("Allowed hosts", OK, ", ".join(hosts) or "(none)")


def check_csrf_origins(prod: bool) -> Check:
    origins = list(settings.CSRF_TRUSTED_ORIGINS)
    insecure = [o for o in origins if not o.startswith("https://")]
    if prod and insecure:
        return Check("CSRF trusted origins", WARNING, f"not https: {', '.join(insecure)}")
    return Check("CSRF trusted origins", OK, ", ".join(origins) or "(none)")


def check_openai(prod: bool) -> list[Check]:
    checks = []
    key = settings.OPENAI_API_KEY
    if key:
        checks.append(Check("OPENAI_API_KEY", OK, _secret_hint(key)))
    else:
        checks.append(
            Check(
                "OPENAI_API_KEY",
                ERROR if prod else WARNING,
                "not set: calls hear a 'not available' message and are hung up",
            )
        )
    url = settings.OPENAI_REALTIME_URL
    if urlsplit(url).scheme != "wss" and prod:
        checks.append(Check("OPENAI_REALTIME_URL", ERROR, f"{url} is not wss://"))
    else:
        checks.append(Check("OPENAI_REALTIME_URL", OK, f"{url} (model {settings.OPENAI_REALTIME_MODEL})"))
    return checks


def check_twilio(prod: bool) -> list[Check]:
    checks = []
    if settings.TWILIO_AUTH_TOKEN:
        checks.append(Check("TWILIO_AUTH_TOKEN", OK, "set"))
    elif prod:
        checks.append(Check("TWILIO_AUTH_TOKEN", ERROR, "not set: webhook signatures cannot be verified"))
    else:
        checks.append(Check("TWILIO_AUTH_TOKEN", WARNING, "not set: local mode accepts unsigned requests"))
    sid = settings.TWILIO_ACCOUNT_SID
    if not sid:
        checks.append(
            Check(
                "TWILIO_ACCOUNT_SID",
                WARNING,
                "not set: webhooks do not check AccountSid; sync_twilio_numbers needs it",
            )
        )
    elif len(sid) != 34 or not sid.startswith("AC"):
        checks.append(Check("TWILIO_ACCOUNT_SID", ERROR, "not an account SID (AC + 32 hex characters)"))
    else:
        checks.append(Check("TWILIO_ACCOUNT_SID", OK, f"set ({sid[:4]}…{sid[-4:]})"))
    return checks


def check_webhook_base(prod: bool) -> Check:
    url = settings.PUBLIC_WEBHOOK_BASE_URL
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in {"http", "https"}:
        return Check("PUBLIC_WEBHOOK_BASE_URL", ERROR, f"{url!r} is not an http(s) origin")
    if parts.query or parts.fragment:
        return Check("PUBLIC_WEBHOOK_BASE_URL", ERROR, f"{url} must not carry a query or fragment")
    if prod and parts.scheme != "https":
        return Check("PUBLIC_WEBHOOK_BASE_URL", ERROR, f"{url} is not https://")
    if parts.path.rstrip("/").endswith("/twilio"):
        return Check(
            "PUBLIC_WEBHOOK_BASE_URL",
            WARNING,
            f"{url} ends in /twilio: Twilio would call …/twilio/twilio/voice",
        )
    return Check("PUBLIC_WEBHOOK_BASE_URL", OK, f"Twilio calls {url}/twilio/voice")


def check_bridge_url(prod: bool) -> Check:
    url = settings.BRIDGE_PUBLIC_URL
    parts = urlsplit(url)
    if parts.scheme not in {"ws", "wss"} or not parts.hostname:
        return Check("BRIDGE_PUBLIC_URL", ERROR, f"{url!r} is not a ws(s):// URL")
    if prod and parts.scheme != "wss":
        return Check("BRIDGE_PUBLIC_URL", ERROR, f"{url} is not wss:// (Twilio streams need TLS)")
    if parts.query:
        return Check("BRIDGE_PUBLIC_URL", ERROR, f"{url}: a <Stream> URL takes no query string")
    if not parts.path.endswith(STREAM_PATH):
        return Check("BRIDGE_PUBLIC_URL", ERROR, f"{url} does not end in {STREAM_PATH}")
    return Check("BRIDGE_PUBLIC_URL", OK, url)


def check_stream_token_ttl(prod: bool) -> Check:
    ttl = settings.STREAM_TOKEN_TTL_S
    if ttl < 5 or ttl > 600:
        return Check(
            "STREAM_TOKEN_TTL_S", WARNING, f"{ttl}s: expected 5-600 s (the token only bridges a ring)"
        )
    return Check("STREAM_TOKEN_TTL_S", OK, f"{ttl}s")


# --- services ------------------------------------------------------------------------------------


def check_database(prod: bool) -> list[Check]:
    conn = connections["default"]
    where = conn.settings_dict.get("HOST") or ""
    if where:
        where = f"{where}:{conn.settings_dict.get('PORT') or ''}".rstrip(":") + "/"
    where += str(conn.settings_dict.get("NAME", ""))
    try:
        conn.ensure_connection()
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means "not reachable"; its first line says why
        return [Check("Database", ERROR, f"{conn.vendor} {where} unreachable: {_first_line(exc)}")]
    checks = [Check("Database", OK, f"{conn.vendor} {where} reachable")]
    if prod and conn.vendor == "sqlite":
        checks.append(
            Check("Database engine", WARNING, "SQLite in production: use PostgreSQL (DATABASE_URL)")
        )
    try:
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(conn)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # a broken migration history must not hide the other checks
        checks.append(Check("Migrations", ERROR, _first_line(exc)))
    else:
        if pending:
            checks.append(Check("Migrations", WARNING, f"{len(pending)} not applied: run manage.py migrate"))
        else:
            checks.append(Check("Migrations", OK, "all applied"))
    return checks


def ping_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    finally:
        client.close()


def check_redis(prod: bool) -> Check:
    url = settings.REDIS_URL
    if not url:
        if prod:
            return Check(
                "Redis",
                WARNING,
                "REDIS_URL unset: the in-memory channel layer does not reach "
                "other processes (dashboard live view, bridge)",
            )
        return Check("Redis", OK, "not used (in-memory channel layer)")
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 6379}"  # never the password in the URL
    try:
        ping_redis(url)
    except Exception as exc:  # connection, auth, TLS or DNS errors all mean "not usable"
        return Check("Redis", ERROR, f"{where} unreachable: {_first_line(exc)}")
    return Check("Redis", OK, f"{where} reachable")


# --- data ----------------------------------------------------------------------------------------


def check_routing(prod: bool) -> list[Check]:
    checks = []
    default = AgentConfig.objects.filter(is_default=True).first()
    if default is None:
        checks.append(
            Check(
                "Default agent config",
                ERROR,
                "none: calls to unrouted numbers are not answered (mark one config default)",
            )
        )
    elif not default.is_active:
        checks.append(Check("Default agent config", ERROR, f"{default.name!r} is inactive"))
    else:
        checks.append(Check("Default agent config", OK, default.name))
    active = PhoneNumber.objects.filter(is_active=True).select_related("agent_config")
    dead = [f"{n.number} → {n.agent_config.name}" for n in active if not n.agent_config.is_active]
    if dead:
        checks.append(Check("Phone numbers", ERROR, "routed to inactive configs: " + "; ".join(dead)))
    else:
        checks.append(Check("Phone numbers", OK, f"{active.count()} active, all routed to active configs"))
    no_target = [
        c.name
        for c in AgentConfig.objects.filter(is_active=True, transfer_number="", tools__name="transfer_call")
    ]
    if no_target:
        checks.append(
            Check(
                "Transfers",
                WARNING,
                f"transfer_call enabled without a transfer number (not offered): {', '.join(no_target)}",
            )
        )
    return checks


def check_tools(prod: bool) -> list[Check]:
    checks = []
    bad_urls, missing_secrets = [], []
    http_tools = Tool.objects.filter(kind=Tool.Kind.HTTP, is_active=True)
    for tool in http_tools:
        try:
            if not tool.url:
                raise ValidationError("no URL")
            validate_https_url(tool.url)
        except ValidationError:
            bad_urls.append(f"{tool.name} ({tool.url or 'no URL'})")
        if tool.secret_header_name and not os.environ.get(tool.secret_env_name):
            missing_secrets.append(tool.secret_env_name)
    if bad_urls:
        checks.append(Check("Tool URLs", ERROR, "not https: " + ", ".join(bad_urls)))
    else:
        checks.append(Check("Tool URLs", OK, f"{len(http_tools)} active HTTP tool(s), all https"))
    if missing_secrets:
        checks.append(
            Check("Tool secrets", WARNING, "not in this environment: " + ", ".join(missing_secrets))
        )
    return checks


SETTINGS_CHECKS: list[Callable[[bool], Check | list[Check]]] = [
    check_debug,
    check_secret_key,
    check_allowed_hosts,
    check_csrf_origins,
    check_openai,
    check_twilio,
    check_webhook_base,
    check_bridge_url,
    check_stream_token_ttl,
    check_redis,
]
DATA_CHECKS: list[Callable[[bool], Check | list[Check]]] = [check_routing, check_tools]


def run_checks(prod: bool | None = None) -> list[Check]:
    prod = is_production() if prod is None else prod
    results: list[Check] = []

    def add(outcome: Check | list[Check]) -> None:
        results.extend(outcome if isinstance(outcome, list) else [outcome])

    for check in SETTINGS_CHECKS:
        add(check(prod))
    database = check_database(prod)
    add(database)
    if database[0].level == ERROR:
        add(Check("Agent configs and tools", ERROR, "not checked: the database is unreachable"))
    else:
        for check in DATA_CHECKS:
            add(check(prod))
    return results


class Command(BaseCommand):
    help = "Check the running configuration (settings, database, Redis, routing, tools); exit 1 on failure."
    requires_system_checks: list[str] = []  # report problems here, do not stop before the report
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--fail-level",
            choices=[ERROR, WARNING],
            default=ERROR,
            help="Lowest level that makes the command exit 1 (default: error).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        prod = is_production()
        self.stdout.write(
            f"voiceops configuration — stage {settings.STAGE}, {'production' if prod else 'local'} mode"
        )
        results = run_checks(prod)
        for result in results:
            style = {OK: self.style.SUCCESS, WARNING: self.style.WARNING, ERROR: self.style.ERROR}[
                result.level
            ]
            self.stdout.write("  " + result.line, style_func=style)
        counts = {level: sum(r.level == level for r in results) for level in SEVERITY}
        summary = f"{counts[ERROR]} failed, {counts[WARNING]} warning(s), {counts[OK]} passed"
        self.stdout.write(summary)
        threshold = SEVERITY[options["fail_level"]]
        failing = [r for r in results if SEVERITY[r.level] >= threshold]
        if failing:
            raise CommandError(f"{len(failing)} check(s) at or above {options['fail_level']}", returncode=1)
