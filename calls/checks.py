"""voiceops' configuration checks, in Django's system check framework.

- Settings (every `manage.py` command): shapes that are wrong anywhere (voiceops.E001-E009, W001-W009).
- Deployment (`manage.py check --deploy`, and `check_config` in production mode): what production needs
  (voiceops.E101-E109, W101-W109).
- Services and data (`manage.py check --deploy --database default`, and `check_config`):
  database, migrations, Redis, OpenAI reachable, routing and tools (voiceops.E201-E209, W201-W209).

`answering_problems()` says why calls cannot be answered right now; runbridge logs it at start-up and the
dashboard shows it as a banner.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ValidationError

STREAM_PATH = "/media-stream"
TAG = "voiceops"
PROBE_TIMEOUT_S = 2.0
PROBE_CACHE_S = 60.0


def is_production() -> bool:
    return not settings.DEBUG or settings.STAGE != "local"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


# --- settings: wrong anywhere -----------------------------------------------------------------------------
@register(TAG)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    padded = [h for h in settings.ALLOWED_HOSTS if h != h.strip() or not h]
    if padded:
        problems.append(Error(f"DJANGO_ALLOWED_HOSTS: entries with spaces or empty never match a request: {padded!r}",
                              id="voiceops.E001"))
    base = urlsplit(settings.PUBLIC_WEBHOOK_BASE_URL)
    if base.query or base.fragment:
        problems.append(Error(f"PUBLIC_WEBHOOK_BASE_URL: {settings.PUBLIC_WEBHOOK_BASE_URL} must not carry a query "
                              "or fragment", id="voiceops.E002"))
    if base.path.rstrip("/").endswith("/twilio"):
        problems.append(Warning(f"PUBLIC_WEBHOOK_BASE_URL: {settings.PUBLIC_WEBHOOK_BASE_URL} ends in /twilio: "
                                "Twilio would call …/twilio/twilio/voice", hint="Give the origin only.",
                                id="voiceops.W001"))
    bridge = urlsplit(settings.BRIDGE_PUBLIC_URL)
    if bridge.query:
        problems.append(Error(f"BRIDGE_PUBLIC_URL: {settings.BRIDGE_PUBLIC_URL}: a <Stream> URL takes no query "
                              "string", id="voiceops.E003"))
    if not bridge.path.endswith(STREAM_PATH):
        problems.append(Error(f"BRIDGE_PUBLIC_URL: {settings.BRIDGE_PUBLIC_URL} does not end in {STREAM_PATH}",
                              id="voiceops.E004"))
    sid = settings.TWILIO_ACCOUNT_SID
    if sid and (len(sid) != 34 or not sid.startswith("AC")):
        problems.append(Error("TWILIO_ACCOUNT_SID: not an account SID (AC + 32 hex characters)", id="voiceops.E005"))
    ttl = settings.STREAM_TOKEN_TTL_S
    if not 5 <= ttl <= 600:
        problems.append(Warning(f"STREAM_TOKEN_TTL_S: {ttl}s, expected 5-600 s (the token only bridges a ring)",
                                id="voiceops.W002"))
    return problems


# --- deployment: what production needs -----------------------------------------------------------------
@register(TAG, deploy=True)
def check_deployment(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    if settings.DEBUG:
        problems.append(Error(f"DJANGO_DEBUG: on in stage {settings.STAGE!r}: set DJANGO_DEBUG=0",
                              id="voiceops.E101"))
    hosts = list(settings.ALLOWED_HOSTS)
    if not hosts:
        problems.append(Error("DJANGO_ALLOWED_HOSTS: empty", id="voiceops.E102"))
    elif "*" in hosts:
        problems.append(Error("DJANGO_ALLOWED_HOSTS: '*' accepts any Host header: list the real host names",
                              id="voiceops.E102"))
    insecure = [o for o in settings.CSRF_TRUSTED_ORIGINS if not o.startswith("https://")]
    if insecure:
        problems.append(Warning(f"DJANGO_CSRF_TRUSTED_ORIGINS: not https: {', '.join(insecure)}",
                                id="voiceops.W101"))
    if not settings.OPENAI_API_KEY:
        problems.append(Error("OPENAI_API_KEY: not set: calls hear a 'not available' message and are hung up",
                              id="voiceops.E103"))
    for name, scheme in (("OPENAI_REALTIME_URL", "wss"), ("OPENAI_LIVE_URL", "wss"),
                         ("TWILIO_API_BASE_URL", "https"), ("PUBLIC_WEBHOOK_BASE_URL", "https"),
                         ("BRIDGE_PUBLIC_URL", "wss")):
        url = getattr(settings, name)
        if urlsplit(url).scheme != scheme:
            problems.append(Error(f"{name}: {url} is not {scheme}://", id="voiceops.E104"))
    if not settings.TWILIO_AUTH_TOKEN:
        problems.append(Error("TWILIO_AUTH_TOKEN: not set: webhook signatures cannot be verified",
                              id="voiceops.E105"))
    if not settings.TWILIO_ACCOUNT_SID:
        problems.append(Warning("TWILIO_ACCOUNT_SID: not set: webhooks do not check AccountSid; "
                                "sync_twilio_numbers and place_call need it", id="voiceops.W102"))
    if not settings.REDIS_URL:
        problems.append(Warning("REDIS_URL: unset: the in-memory channel layer does not reach other processes "
                                "(dashboard live view, bridge)", id="voiceops.W103"))
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        problems.append(Warning("DATABASE_URL: SQLite in production: use PostgreSQL", id="voiceops.W104"))
    return problems


# --- services and data (`check --deploy --database default`, and check_config) --------------------------
# Not a plain check: `migrate` runs the plain checks with a database, before the tables exist.
@register(TAG, deploy=True)
def check_services(app_configs: Any = None, databases: Iterable[str] | None = None,
                   **kwargs: Any) -> list[CheckMessage]:
    if not databases:
        return []
    from django.db import DatabaseError

    problems = _database_problems()
    if any(p.id == "voiceops.E201" for p in problems):
        problems.append(Error("Agent configs and tools: not checked: the database is unreachable",
                              id="voiceops.E202"))
    else:
        try:
            problems += _routing_problems() + _tool_problems()
        except DatabaseError as exc:  # e.g. the tables do not exist yet (migrations pending)
            problems.append(Error(f"Agent configs and tools: not checked: {first_line(exc)}", id="voiceops.E202"))
    problems += _redis_problems()
    if settings.OPENAI_API_KEY:
        problems += [Warning(f"OpenAI: {problem}", id="voiceops.W201") for problem in answering_problems()]
    elif not is_production():  # production reports it as voiceops.E103
        problems.append(Warning("OPENAI_API_KEY: not set: calls hear a 'not available' message and are hung up",
                                id="voiceops.W202"))
    if not settings.TWILIO_AUTH_TOKEN and not is_production():
        problems.append(Warning("TWILIO_AUTH_TOKEN: not set: local mode accepts unsigned requests",
                                id="voiceops.W203"))
    return problems


def _database_problems() -> list[CheckMessage]:
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    conn = connections["default"]
    where = ":".join(str(x) for x in (conn.settings_dict.get("HOST"), conn.settings_dict.get("PORT")) if x)
    where = f"{where}/{conn.settings_dict.get('NAME', '')}" if where else str(conn.settings_dict.get("NAME", ""))
    try:
        conn.ensure_connection()
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means "not reachable"; its first line says why
        return [Error(f"Database: {conn.vendor} {where} unreachable: {first_line(exc)}", id="voiceops.E201")]
    try:
        executor = MigrationExecutor(conn)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # a broken migration history must not hide the other checks
        return [Error(f"Migrations: {first_line(exc)}", id="voiceops.E203")]
    if pending:
        return [Warning(f"Migrations: {len(pending)} not applied", hint="Run manage.py migrate.",
                        id="voiceops.W204")]
    return []


def _redis_problems() -> list[CheckMessage]:
    url = settings.REDIS_URL
    if not url:
        return []
    import redis

    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 6379}"  # never the password in the URL
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:  # connection, auth, TLS or DNS errors all mean "not usable"
        return [Error(f"Redis: {where} unreachable: {first_line(exc)}", id="voiceops.E204")]
    finally:
        client.close()
    return []


def _routing_problems() -> list[CheckMessage]:
    from calls.models import AgentConfig, PhoneNumber

    problems: list[CheckMessage] = []
    default = AgentConfig.objects.filter(is_default=True).first()
    if default is None:
        problems.append(Error("Default agent config: none: calls to unrouted numbers are not answered",
                              hint="Mark one config default in the admin.", id="voiceops.E205"))
    elif not default.is_active:
        problems.append(Error(f"Default agent config: {default.name!r} is inactive", id="voiceops.E205"))
    active = PhoneNumber.objects.filter(is_active=True, agent_config__is_active=False).select_related("agent_config")
    dead = [f"{n.number} → {n.agent_config.name}" for n in active]
    if dead:
        problems.append(Error("Phone numbers: routed to inactive configs: " + "; ".join(dead), id="voiceops.E206"))
    no_target = AgentConfig.objects.filter(is_active=True, transfer_number="", tools__name="transfer_call")
    names = [c.name for c in no_target]
    if names:
        problems.append(Warning("Transfers: transfer_call enabled without a transfer number (not offered): "
                                + ", ".join(names), id="voiceops.W205"))
    return problems


def _tool_problems() -> list[CheckMessage]:
    from calls.models import Tool
    from calls.validators import validate_https_url

    bad_urls, missing_secrets = [], []
    for tool in Tool.objects.filter(kind=Tool.Kind.HTTP, is_active=True):
        try:
            if not tool.url:
                raise ValidationError("no URL")
            validate_https_url(tool.url)
        except ValidationError as exc:
            bad_urls.append(f"{tool.name} ({tool.url or 'no URL'}: {exc.messages[0].split(':')[0]})")
        if tool.secret_header_name and not os.environ.get(tool.secret_env_name):
            missing_secrets.append(tool.secret_env_name)
    problems: list[CheckMessage] = []
    if bad_urls:
        problems.append(Error("Tool URLs: " + "; ".join(bad_urls), id="voiceops.E207"))
    if missing_secrets:
        problems.append(Warning("Tool secrets: not in this environment: " + ", ".join(missing_secrets),
                                id="voiceops.W206"))
    return problems


# --- can calls be answered right now? ------------------------------------------------------------------
_probe_cache: dict[str, tuple[float, str | None]] = {}


def probe_upstream(url: str) -> str | None:
    """Why `url`'s host cannot be reached over TCP (DNS, refused, timeout), or None. Cached for a minute."""
    cached = _probe_cache.get(url)
    now = time.monotonic()
    if cached and now - cached[0] < PROBE_CACHE_S:
        return cached[1]
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in {"wss", "https"} else 80)
    problem = None
    try:
        socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        problem = f"{parts.hostname}:{port} unreachable ({first_line(exc)})"
    _probe_cache[url] = (now, problem)
    return problem


def answering_problems(probe: bool = True) -> list[str]:
    """Why the agent cannot answer calls right now: no OpenAI key, or (with `probe`) the OpenAI endpoint
    unreachable. Empty when calls can be answered."""
    if not settings.OPENAI_API_KEY:
        return ["OPENAI_API_KEY is not set: callers hear 'not available' and are hung up"]
    if probe:
        problem = probe_upstream(settings.OPENAI_REALTIME_URL)
        if problem:
            return [f"OpenAI Realtime at {settings.OPENAI_REALTIME_URL}: {problem}"]
    return []
