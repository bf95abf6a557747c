"""The one settings module. Every stage is configured from the environment (12-factor).

Local mode (DJANGO_DEBUG=1, the default when nothing is set) runs with embedded defaults: SQLite,
the in-memory channel layer and a random secret key. Production mode (DJANGO_DEBUG=0) refuses to
start without a real secret key and allowed hosts, and passes `manage.py check --deploy`.

VOICEOPS_COMPONENT picks what this process serves: `all` (local), `web`, `bridge` or `webhook`
(the Lambda slice, which loads only what the Twilio webhooks need to keep cold starts small).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import environ

from voiceops.env import Environment
from voiceops.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

# Every variable is read through `env`, which collects what is wrong (one line per variable); the end of
# this module refuses to load with those lines (see voiceops/env.py).
env = Environment()

DEBUG: bool = env.bool("DJANGO_DEBUG", default=True)
COMPONENT: str = env.choice("VOICEOPS_COMPONENT", "all", ("all", "web", "bridge", "webhook"))
STAGE: str = env.str("VOICEOPS_STAGE", default="local")

_secret = env.str("DJANGO_SECRET_KEY", default="")
if not _secret:
    if not DEBUG:
        env.required("DJANGO_SECRET_KEY", "is required when DJANGO_DEBUG=0")
    _secret = secrets.token_urlsafe(50)  # local mode: a fresh key per run
elif not DEBUG and (len(_secret) < 50 or len(set(_secret)) < 5 or _secret.startswith("django-insecure")):
    env.required("DJANGO_SECRET_KEY", "is too weak for production (50+ varied characters)")
SECRET_KEY = _secret

ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
if not DEBUG and not ALLOWED_HOSTS:
    env.required("DJANGO_ALLOWED_HOSTS", "is required when DJANGO_DEBUG=0")
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
CORS_ALLOWED_ORIGINS: list[str] = env.list("CORS_ALLOWED_ORIGINS", [])
PORT: int = env.int("PORT", default=8000, minimum=1, maximum=65535)

# --- applications -------------------------------------------------------------------------------
if COMPONENT == "webhook":
    # The Lambda slice: models and the webhook views only; no admin, sessions, channels or static.
    INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "calls", "lambda_webhook"]
    MIDDLEWARE = [
        "voiceops.logs.RequestContextMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
    ]
    ROOT_URLCONF = "lambda_webhook.urls"
else:
    INSTALLED_APPS = [
        "daphne",
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "channels",
        "corsheaders",
        "calls",
        "bridge",
        "lambda_webhook",
    ]
    MIDDLEWARE = [
        "voiceops.logs.RequestContextMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "corsheaders.middleware.CorsMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]
    ROOT_URLCONF = "voiceops.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "voiceops.wsgi.application"
ASGI_APPLICATION = "voiceops.asgi.application"

# --- data ---------------------------------------------------------------------------------------
_database_url = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
if _database_url.split("://", 1)[0] not in environ.Env.DB_SCHEMES or "://" not in _database_url:
    env.problem("DATABASE_URL", "is not a database URL (postgres://user:password@host:5432/name or sqlite:///path)")
    _database_url = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": environ.Env.db_url_config(_database_url)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests that start a server in a subprocess need a file-backed test database to share.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db.{os.getpid()}.sqlite3")}
    # Local mode holds a burst of calls: the webhook and the bridge write at once. IMMEDIATE transactions take
    # the write lock up front (a deferred one that reads first cannot wait for it: "database is locked"),
    # the timeout lets writers queue, and WAL lets the dashboard read while they do.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        transaction_mode="IMMEDIATE", timeout=20, init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0, minimum=0))
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int(
        "DB_CONNECT_TIMEOUT_S", default=5, minimum=1
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL: str = env.str("REDIS_URL", default="")
if REDIS_URL and not env.url("REDIS_URL", "", ("redis", "rediss")):
    REDIS_URL = ""
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 defaults socket_timeout to 5 s, the length of channels_redis's blocking read (BZPOPMIN):
                # every idle receive then failed and each dashboard feed was torn down every 5 s. Longer than
                # that read, still bounded so a vanished Redis is noticed.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}],
                "prefix": f"voiceops:{STAGE}", "capacity": 500, "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- auth, i18n ---------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- static files: WhiteNoise locally, S3 + CloudFront in production ------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
AWS_STORAGE_BUCKET_NAME: str = env.str("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    AWS_S3_CUSTOM_DOMAIN = env.str("AWS_S3_CUSTOM_DOMAIN", default="") or None
    STORAGES = {
        # Hashed names + manifest (voiceops/storage.py); the release runs collectstatic before the web roll.
        "staticfiles": {
            "BACKEND": "voiceops.storage.ManifestS3Storage",
            "OPTIONS": {"location": "static", "querystring_auth": False, "file_overwrite": True},
        },
    }
    if AWS_S3_CUSTOM_DOMAIN:
        STATIC_URL = f"https://{AWS_S3_CUSTOM_DOMAIN}/static/"
else:
    STORAGES = {
        "staticfiles": {
            "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }

# --- uploaded files (call recordings): private, served to staff only (calls.views.call_recording) ---------
# Locally files under MEDIA_ROOT, never published under a URL. In AWS a private S3 bucket of its own (not the
# static files' bucket, which CloudFront publishes): the view redirects to a signed URL valid for
# RECORDING_URL_TTL_S seconds, never through a CloudFront domain (it would hand out unsigned URLs).
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(BASE_DIR / "media"))
RECORDINGS_BUCKET_NAME: str = env.str("RECORDINGS_BUCKET_NAME", default="")
RECORDING_URL_TTL_S = env.int("RECORDING_URL_TTL_S", default=300)
RECORDING_MAX_MINUTES = env.int("RECORDING_MAX_MINUTES", default=30)  # per call (~1.5 MB a minute in memory)
if RECORDINGS_BUCKET_NAME:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": RECORDINGS_BUCKET_NAME, "custom_domain": None, "querystring_auth": True,
            "querystring_expire": RECORDING_URL_TTL_S, "signature_version": "s3v4", "file_overwrite": False,
            "default_acl": None,
        },
    }
else:
    STORAGES["default"] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}

# --- security (production) ----------------------------------------------------------------------
if not DEBUG:
    # TLS ends at the ALB / API Gateway / CloudFront, which set X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # ALB health checks speak plain HTTP
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# --- voiceops -----------------------------------------------------------------------------------
OPENAI_API_KEY: str = env.str("OPENAI_API_KEY", default="")
OPENAI_REALTIME_URL: str = env.url("OPENAI_REALTIME_URL", "wss://api.openai.com/v1/realtime", ("wss", "ws"))
OPENAI_REALTIME_MODEL: str = env.str("OPENAI_REALTIME_MODEL", default="gpt-realtime")
OPENAI_LIVE_URL: str = env.url("OPENAI_LIVE_URL", "wss://api.openai.com/v1/live/sessions", ("wss", "ws"))
# A Realtime session lasts at most 60 minutes: a longer call moves to a fresh session (with the conversation so
# far) after this long, at the first quiet moment. Tests shorten it.
OPENAI_REALTIME_HANDOVER_S: int = env.int("OPENAI_REALTIME_HANDOVER_S", 55 * 60, minimum=1, maximum=3500)
TWILIO_API_BASE_URL: str = env.url("TWILIO_API_BASE_URL", "https://api.twilio.com", ("https", "http"))
TWILIO_ACCOUNT_SID: str = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN: str = env.str("TWILIO_AUTH_TOKEN", default="")
if not DEBUG and not TWILIO_AUTH_TOKEN and COMPONENT in {"bridge", "webhook"}:
    env.required("TWILIO_AUTH_TOKEN", "is required when DJANGO_DEBUG=0: it verifies every request")
PUBLIC_WEBHOOK_BASE_URL: str = env.url("PUBLIC_WEBHOOK_BASE_URL", f"http://127.0.0.1:{PORT}", ("https", "http"))
PUBLIC_WEBHOOK_BASE_URL = PUBLIC_WEBHOOK_BASE_URL.rstrip("/")
BRIDGE_PUBLIC_URL: str = env.url("BRIDGE_PUBLIC_URL", f"ws://127.0.0.1:{PORT}/media-stream", ("wss", "ws"))
STREAM_TOKEN_TTL_S: int = env.int("STREAM_TOKEN_TTL_S", default=60, minimum=1)
DRAIN_TIMEOUT_S: int = env.int("DRAIN_TIMEOUT_S", default=110, minimum=0)
# How often the dashboard's live WebSocket sends a heartbeat (calls/live_feed.py): well inside the shortest idle
# timeout of any proxy or load balancer in front of the app (the ALB's default is 60 s; deploy/cdk's tests check
# ours against this default), so that a dashboard left open on a quiet line is not cut. Tests shorten it.
LIVE_FEED_HEARTBEAT_S: int = env.int("LIVE_FEED_HEARTBEAT_S", default=20, minimum=1, maximum=600)
# Hosts an operator allows HTTP tools to reach despite the SSRF guard (local development only).
TOOL_ALLOWED_PRIVATE_HOSTS: list[str] = env.list("TOOL_ALLOWED_PRIVATE_HOSTS", [])
TOOL_CA_BUNDLE: str = env.str("TOOL_CA_BUNDLE", default="")
BRIDGE_INSTANCE_ID: str = env.str("BRIDGE_INSTANCE_ID", default="") or secrets.token_hex(4)
METRICS_NAMESPACE: str = env.str("METRICS_NAMESPACE", default="VoiceOps")

# JSON lines in production (CloudWatch Logs Insights reads the fields), plain lines locally; see voiceops/logs.py.
LOG_FORMAT: str = env.choice("LOG_FORMAT", "plain" if DEBUG else "json", ("json", "plain"))
LOGGING_CONFIG = "voiceops.logs.configure"
LOGGING = logging_config(
    json_lines=LOG_FORMAT == "json", level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
)

env.raise_problems()
