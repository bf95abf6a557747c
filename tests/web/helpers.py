"""Helpers shared by the admin and dashboard tests."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from django.utils import timezone

from calls import services
from calls.models import AgentConfig, Call

BOOLEAN_FIELDS = {"interrupt_response", "transcription_enabled", "is_active", "is_default"}


def config_post_data(config: AgentConfig, **overrides: Any) -> dict[str, Any]:
    """The admin change form's POST body for `config`, with some fields changed."""
    data: dict[str, Any] = {}
    for field in services.REVISION_FIELDS:
        value = getattr(config, field)
        if field in BOOLEAN_FIELDS:
            if value:
                data[field] = "on"
        else:
            data[field] = "" if value is None else str(value)
    data["tools"] = [str(pk) for pk in config.tools.values_list("pk", flat=True)] if config.pk else []
    data["change_note"] = ""
    for key, value in overrides.items():
        if value is False and key in BOOLEAN_FIELDS:
            data.pop(key, None)
        elif value is True and key in BOOLEAN_FIELDS:
            data[key] = "on"
        else:
            data[key] = value
    return data


def new_config_data(name: str, **overrides: Any) -> dict[str, Any]:
    return config_post_data(AgentConfig(name=name, instructions="You answer the phone for Acme."), **overrides)


def make_call(
    config: AgentConfig | None, sid: str = "CA" + "1" * 32, status: str = Call.Status.COMPLETED, **fields: Any
) -> Call:
    now = timezone.now()
    defaults: dict[str, Any] = {
        "from_number": "+14155550123",
        "to_number": "+15550001111",
        "agent_config": config,
        "config_snapshot": services.config_snapshot(config) if config else {},
        "status": status,
        "started_at": now,
    }
    if status in Call.TERMINAL:
        defaults.update(
            ended_at=now,
            duration_s=83,
            end_reason=Call.EndReason.CALLER_HANGUP,
            input_tokens=1200,
            output_tokens=800,
            cost_usd=Decimal("0.1234"),
        )
    defaults.update(fields)
    return Call.objects.create(twilio_call_sid=sid, **defaults)


def add_conversation(call: Call) -> None:
    services.add_events(
        call.pk,
        [
            {
                "seq": 0,
                "kind": "agent",
                "t_ms": 400,
                "text": "Thanks for calling Acme Dental, how can I help?",
            },
            {"seq": 1, "kind": "caller", "t_ms": 3200, "text": "I'd like to move my appointment to Friday."},
            {
                "seq": 2,
                "kind": "tool_call",
                "t_ms": 5100,
                "text": "",
                "data": {"name": "lookup_appointment", "arguments": '{"name": "Sam"}'},
            },
            {"seq": 3, "kind": "tool_result", "t_ms": 5600, "text": "Found: Tuesday 10:00"},
            {"seq": 4, "kind": "agent", "t_ms": 65_000, "text": "Done — see you Friday at ten. <b>Bye</b>"},
            {"seq": 5, "kind": "error", "t_ms": 66_000, "text": "upstream hiccup"},
        ],
    )


SCREENSHOTS = os.environ.get("VOICEOPS_SCREENSHOTS", "/tmp/voiceops-screenshots")  # docs/screenshots for the README


def screenshot(page: Any, name: str) -> None:
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, name), full_page=True)


def logged_in_page(browser: Any, base_url: str, username: str = "admin", password: str = "password") -> Any:
    """A new browser tab logged in to the admin; JavaScript errors collect in `page.js_errors`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base_url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    return page
