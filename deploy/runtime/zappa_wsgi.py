"""WSGI application for the Zappa variant of the webhook slice (`app_function` in zappa_settings.json).

Zappa speaks WSGI, so this is Django's WSGI app in the slim webhook configuration, with the same cold-start
steps as the Mangum handler: SSM parameters under VOICEOPS_SSM_PREFIX, then DATABASE_URL from DB_* pieces.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceops.settings")
os.environ.setdefault("VOICEOPS_COMPONENT", "webhook")

from voiceops_entrypoint import ensure_database_url

from lambda_webhook.secrets import load_into_environ

load_into_environ()
ensure_database_url(os.environ)

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
