"""WSGI entry point (management and tooling; the servers run the ASGI app)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceops.settings")
application = get_wsgi_application()
