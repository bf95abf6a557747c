"""Lambda handler for the webhook slice, deployed from a zip: `lambda_entry.handler`.

Builds DATABASE_URL (RDS Proxy endpoint + the RDS secret fetched once per cold start) before Django reads its
settings, then hands every event to the app's own Mangum handler. The app's handler loads the
/voiceops/<stage>/ SSM parameters itself (VOICEOPS_SSM_PREFIX).
"""

from __future__ import annotations

import os

from voiceops_entrypoint import ensure_database_url

ensure_database_url(os.environ)

from lambda_webhook.handler import handler  # noqa: E402

__all__ = ["handler"]
