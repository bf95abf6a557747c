"""The commands that play Twilio (simulate_call, loadtest) need `calls.simulators`, which production images leave
out (deploy/Dockerfile.*.dockerignore). They import it guarded and refuse clearly when it is absent."""

from __future__ import annotations

from types import ModuleType

from django.core.management.base import CommandError

MISSING = (
    "The call simulators (calls/simulators) are not installed here: production images leave them out. "
    "Run this command from a source checkout (see README)."
)


def require(module: ModuleType | None) -> None:
    if module is None:
        raise CommandError(MISSING)
