"""AWS Lambda entry point: Mangum around the slim webhook-only Django app (API Gateway HTTP API, v2).

Secrets come from SSM / Secrets Manager at cold start (see `secrets.load_into_environ`), before Django
reads its settings, so nothing secret sits in the function's plain environment.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceops.settings")
os.environ.setdefault("VOICEOPS_COMPONENT", "webhook")

from lambda_webhook.secrets import load_into_environ

load_into_environ()

from django.core.asgi import get_asgi_application  # noqa: E402
from mangum import Mangum  # noqa: E402

# lifespan "off": Django has no lifespan protocol; API Gateway's $default stage keeps paths unprefixed.
handler = Mangum(get_asgi_application(), lifespan="off")
