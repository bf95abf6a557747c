"""Factories for the maintenance command tests: rows are made through the models and services."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from calls import services
from calls.models import AgentConfig, Call
from tests.conftest import new_call_sid


@pytest.fixture
def make_call(default_config: AgentConfig) -> Callable[..., Call]:
    def make(
        *,
        created: datetime | None = None,
        status: str = Call.Status.COMPLETED,
        config: AgentConfig | None = None,
        events: list[tuple[str, str]] = (),
        **fields: Any,
    ) -> Call:
        call = services.start_call(
            new_call_sid(),
            "AC" + "0" * 32,
            fields.pop("from_number", "+14155550100"),
            fields.pop("to_number", "+14155550199"),
            config or default_config,
        )
        services.add_events(
            call.pk,
            [
                {"seq": i, "kind": kind, "t_ms": 1000 * i, "text": text}
                for i, (kind, text) in enumerate(events)
            ],
        )
        updates = {"status": status, **fields}
        if created is not None:
            updates["created_at"] = created  # auto_now_add: only an UPDATE can backdate it
        Call.objects.filter(pk=call.pk).update(**updates)
        call.refresh_from_db()
        return call

    return make


@pytest.fixture
def run() -> Callable[..., tuple[str, str]]:
    """call_command with captured stdout/stderr."""

    def run_command(name: str, *args: str, **options: Any) -> tuple[str, str]:
        out, err = StringIO(), StringIO()
        call_command(name, *args, stdout=out, stderr=err, **options)
        return out.getvalue(), err.getvalue()

    return run_command
