"""Settings parsing, checked in fresh interpreters with a controlled environment (settings are read once,
at import, so each case needs its own process)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = secrets.token_urlsafe(60)
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": STRONG_KEY,
    "DJANGO_ALLOWED_HOSTS": "voice.example.com",
    "TWILIO_AUTH_TOKEN": "twilio-token-for-settings-tests",
}
SHOW = """
import json, django
from django.conf import settings as s
django.setup()
names = ["DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "CORS_ALLOWED_ORIGINS", "PORT",
         "STREAM_TOKEN_TTL_S",
         "SESSION_COOKIE_SECURE", "INSTALLED_APPS"]
values = {name: getattr(s, name) for name in names}
values["SECURE_SSL_REDIRECT"] = getattr(s, "SECURE_SSL_REDIRECT", None)
values["DB"] = {k: v for k, v in s.DATABASES["default"].items() if k != "PASSWORD"}
values["LAYER"] = s.CHANNEL_LAYERS["default"]
values["SECRET_KEY_LEN"] = len(s.SECRET_KEY)
print(json.dumps(values, default=str))
"""


def run_python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run in the project's interpreter with ONLY `env` (plus PATH/HOME): nothing leaks in from CI."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "voiceops.settings",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def load(env: dict[str, str]) -> dict:
    result = run_python(env, "-c", SHOW)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refusal(env: dict[str, str]) -> str:
    result = run_python(env, "-c", SHOW)
    assert result.returncode != 0, result.stdout
    assert "SettingsError" in result.stderr  # an ImproperlyConfigured
    return result.stderr.strip().splitlines()[-1]


def test_local_defaults():
    values = load({})

    assert values["DEBUG"] is True
    assert values["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost"]
    assert values["DB"]["ENGINE"] == "django.db.backends.sqlite3"
    assert values["DB"]["NAME"].endswith("db.sqlite3")
    assert values["LAYER"] == {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    assert values["PORT"] == 8000
    assert values["STREAM_TOKEN_TTL_S"] == 60
    assert values["SECRET_KEY_LEN"] >= 50  # a random key per run


def test_local_secret_key_is_random_per_run():
    script = "import django; from django.conf import settings; django.setup(); print(settings.SECRET_KEY)"
    first, second = run_python({}, "-c", script), run_python({}, "-c", script)
    assert first.stdout.strip() and first.stdout != second.stdout


def test_production_refuses_a_missing_secret_key():
    env = {**PRODUCTION}
    del env["DJANGO_SECRET_KEY"]
    assert "DJANGO_SECRET_KEY is required" in refusal(env)


@pytest.mark.parametrize("key", ["short-key", "django-insecure-" + "a1b2c3d4e5" * 6, "ab" * 40])
def test_production_refuses_a_weak_secret_key(key):
    assert "too weak" in refusal({**PRODUCTION, "DJANGO_SECRET_KEY": key})


def test_production_refuses_empty_allowed_hosts():
    assert "DJANGO_ALLOWED_HOSTS is required" in refusal({**PRODUCTION, "DJANGO_ALLOWED_HOSTS": ""})


@pytest.mark.parametrize("component", ["bridge", "webhook"])
def test_production_bridge_and_webhook_need_the_twilio_token(component):
    env = {**PRODUCTION, "VOICEOPS_COMPONENT": component}
    del env["TWILIO_AUTH_TOKEN"]
    assert "TWILIO_AUTH_TOKEN is required" in refusal(env)


def test_unknown_component_is_refused():
    assert "VOICEOPS_COMPONENT" in refusal({"VOICEOPS_COMPONENT": "everything"})


def test_webhook_component_loads_only_the_slim_app():
    values = load({"VOICEOPS_COMPONENT": "webhook"})
    assert "django.contrib.admin" not in values["INSTALLED_APPS"]
    assert {"calls", "lambda_webhook"} <= set(values["INSTALLED_APPS"])


def test_production_security_settings():
    values = load(PRODUCTION)
    assert values["DEBUG"] is False
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SESSION_COOKIE_SECURE"] is True


def test_database_url_selects_postgresql():
    values = load({"DATABASE_URL": "postgres://voice:s3cret@db.internal:5433/voiceops"})
    db = values["DB"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["HOST"], int(db["PORT"])) == ("voiceops", "voice", "db.internal", 5433)
    assert db["OPTIONS"]["connect_timeout"] == 5


def test_redis_url_selects_the_redis_channel_layer():
    values = load({"REDIS_URL": "redis://cache.internal:6379/2", "VOICEOPS_STAGE": "prod"})
    layer = values["LAYER"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    (host,) = layer["CONFIG"]["hosts"]
    assert host["address"] == "redis://cache.internal:6379/2"
    assert host["socket_timeout"] > 5  # longer than channels_redis's 5 s blocking read (BZPOPMIN)
    assert layer["CONFIG"]["prefix"] == "voiceops:prod"


def test_lists_come_from_comma_separated_variables():
    values = load(
        {
            "DJANGO_ALLOWED_HOSTS": "voice.example.com,admin.example.com",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://admin.example.com,https://voice.example.com",
            "CORS_ALLOWED_ORIGINS": "https://app.example.com",
            "PORT": "9000",
        }
    )
    assert values["ALLOWED_HOSTS"] == ["voice.example.com", "admin.example.com"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://admin.example.com", "https://voice.example.com"]
    assert values["CORS_ALLOWED_ORIGINS"] == ["https://app.example.com"]
    assert values["PORT"] == 9000


def test_list_entries_are_trimmed():
    # "a, b" is how people write lists; an entry with a leading space never matches a Host header.
    values = load(
        {
            "DJANGO_ALLOWED_HOSTS": "voice.example.com, admin.example.com",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://a.example.com, https://b.example.com",
        }
    )
    assert values["ALLOWED_HOSTS"] == ["voice.example.com", "admin.example.com"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://a.example.com", "https://b.example.com"]


FULL_PRODUCTION = {
    **PRODUCTION, "OPENAI_API_KEY": "sk-settings-test", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "DATABASE_URL": "postgres://voice@db.internal:5432/voiceops", "REDIS_URL": "redis://cache.internal:6379/0",
    "PUBLIC_WEBHOOK_BASE_URL": "https://voice.example.com", "BRIDGE_PUBLIC_URL": "wss://voice.example.com/media-stream",
}


def test_check_deploy_is_clean_in_production():
    result = run_python(FULL_PRODUCTION, "manage.py", "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


def test_check_deploy_flags_a_debug_deployment():
    # The check above can fail: the same command with DEBUG on reports security.W018.
    env = {**FULL_PRODUCTION, "DJANGO_DEBUG": "1"}
    result = run_python(env, "manage.py", "check", "--deploy")
    assert "security.W018" in result.stdout + result.stderr
    assert "voiceops.E101" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "check_id"),
    [
        ("OPENAI_API_KEY", "", "voiceops.E103"),
        ("OPENAI_REALTIME_URL", "ws://api.openai.com/v1/realtime", "voiceops.E104"),
        ("BRIDGE_PUBLIC_URL", "ws://voice.example.com/media-stream", "voiceops.E104"),
        ("DJANGO_ALLOWED_HOSTS", "*", "voiceops.E102"),
        ("REDIS_URL", "", "voiceops.W103"),
    ],
)
def test_check_deploy_names_what_production_lacks(variable, value, check_id):
    result = run_python({**FULL_PRODUCTION, variable: value}, "manage.py", "check", "--deploy",
                        "--fail-level", "WARNING")
    assert result.returncode == 1
    assert check_id in result.stderr and variable in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("PORT", "abc", "PORT='abc' is not a whole number"),
        ("PORT", "70000", "PORT='70000' is out of range"),
        ("DATABASE_URL", "garbage", "DATABASE_URL is not a database URL"),
        ("DJANGO_DEBUG", "nope", "DJANGO_DEBUG='nope' is not a yes/no value"),
        ("STREAM_TOKEN_TTL_S", "abc", "STREAM_TOKEN_TTL_S='abc' is not a whole number"),
        ("OPENAI_REALTIME_URL", "garbage", "OPENAI_REALTIME_URL='garbage' is not a wss:// or ws:// URL"),
        ("OPENAI_LIVE_URL", "https://api.openai.com/v1/live", "OPENAI_LIVE_URL='https://api.openai.com/v1/live' is"),
        ("TWILIO_API_BASE_URL", "garbage", "TWILIO_API_BASE_URL='garbage' is not a https:// or http:// URL"),
        ("BRIDGE_PUBLIC_URL", "wss://", "BRIDGE_PUBLIC_URL='wss://' is not"),
        ("REDIS_URL", "cache:6379", "REDIS_URL is not a redis:// or rediss:// URL"),
        ("VOICEOPS_COMPONENT", "everything", "VOICEOPS_COMPONENT='everything' must be one of"),
    ],
)
def test_a_bad_setting_is_one_clear_line_without_a_traceback(variable, value, says):
    result = run_python({variable: value}, "manage.py", "check")

    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"voiceops: bad setting: {says}")
    assert "Traceback" not in result.stderr


def test_every_bad_setting_is_reported_at_once_and_secrets_are_not_echoed():
    result = run_python({"PORT": "abc", "DJANGO_DEBUG": "nope", "DATABASE_URL": "postgres//u:hunter2@db/x"},
                        "manage.py", "check")

    lines = result.stderr.splitlines()
    assert [line.split()[3] for line in lines] == ["DJANGO_DEBUG='nope'", "PORT='abc'", "DATABASE_URL"]
    assert "hunter2" not in result.stderr


def test_check_config_reports_settings_that_do_not_load():
    result = run_python({"DJANGO_DEBUG": "nope", "STREAM_TOKEN_TTL_S": "-5"}, "manage.py", "check_config")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "✗ DJANGO_DEBUG='nope' is not a yes/no value: use 1 or 0 (also true/false, yes/no, on/off)" in lines
    assert "✗ STREAM_TOKEN_TTL_S='-5' is out of range (1-…)" in lines
    assert lines[-1].startswith("2 failed")
