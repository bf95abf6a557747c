"""Idempotent local setup: an admin user (credentials printed), a default agent config with a greeting and
the built-in tools, and the number the README's test call dials routed to it. `make run` calls it on every
start and prints where the admin and the dashboard are."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from calls import services
from calls.models import AgentConfig, PhoneNumber

DEMO_INSTRUCTIONS = """You are the friendly phone assistant of Example Dental, a small dental practice.
Speak briefly and warmly: one or two sentences at a time, since the caller is on the phone.
You can answer questions about opening hours (Monday to Friday, 8am to 6pm), the address
(12 Harbour Street) and how to book. If the caller wants a person, offer to transfer them.
When the caller is done, say goodbye and end the call."""
DEMO_GREETING = "Thank you for calling Example Dental. How can I help you today?"
# The number the README's `simulate_call --to` dials (Twilio's magic test number).
DEMO_NUMBER = "+15005550006"
# Where transfer_call sends callers in the demo: a fictional number (555-01xx), so the built-in transfer tool
# is offered and `simulate_call` shows the <Dial>. Set a real one in the admin.
DEMO_TRANSFER_NUMBER = "+15555550100"
CREDENTIALS_FILE = Path(settings.BASE_DIR) / ".admin-credentials"


class Command(BaseCommand):
    help = "Create the local admin user and a default agent config (safe to run repeatedly)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default=os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin"),
                            help="The admin user to ensure (default DJANGO_SUPERUSER_USERNAME or admin).")
        parser.add_argument("--reset-password", action="store_true", help="Give the admin a new password.")

    @transaction.atomic
    def handle(self, *args: Any, username: str, reset_password: bool, **options: Any) -> None:
        services.ensure_builtin_tools()
        config = AgentConfig.objects.filter(is_default=True).first()
        if config is None:
            config = AgentConfig.objects.create(
                name="Front desk", instructions=DEMO_INSTRUCTIONS, greeting=DEMO_GREETING, is_default=True,
                transfer_number=DEMO_TRANSFER_NUMBER,
            )
            config.tools.set(services.ensure_builtin_tools())
            services.record_revision(config, comment="Created by seed_demo")
            self.stdout.write(f"Created the default agent config {config.name!r}.")
        else:
            self.stdout.write(f"Default agent config: {config.name!r}.")
        number, created = PhoneNumber.objects.get_or_create(
            number=DEMO_NUMBER, defaults={"agent_config": config, "label": "Demo (simulate_call)"}
        )
        if created:
            self.stdout.write(f"Routed {number.number} (the README's test number) to {config.name!r}.")
        self._ensure_admin(username, reset_password)

    def _ensure_admin(self, username: str, reset_password: bool) -> None:
        User = get_user_model()
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        user = User.objects.filter(username=username).first()
        if not settings.DEBUG and not password and (user is None or reset_password):
            raise CommandError("In production set DJANGO_SUPERUSER_PASSWORD; seed_demo will not invent one.")
        if user is not None and not reset_password:
            saved = CREDENTIALS_FILE.read_text().strip() if settings.DEBUG and CREDENTIALS_FILE.exists() else ""
            shown = saved.split(":", 1)[1] if saved.startswith(f"{username}:") else "(unchanged; --reset-password)"
            self._print_login(username, shown)
            return
        password = password or secrets.token_urlsafe(12)
        if user is None:
            User.objects.create_superuser(username=username, email="", password=password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        if settings.DEBUG:
            CREDENTIALS_FILE.write_text(f"{username}:{password}\n")
            CREDENTIALS_FILE.chmod(0o600)
        self._print_login(username, password if settings.DEBUG else "(from DJANGO_SUPERUSER_PASSWORD)")

    def _print_login(self, username: str, password: str) -> None:
        self.stdout.write(self.style.SUCCESS(
            f"Admin: http://127.0.0.1:{settings.PORT}/admin/  user: {username}  password: {password}"
        ))
        self.stdout.write(self.style.SUCCESS(f"Dashboard: http://127.0.0.1:{settings.PORT}/dashboard/"))
