"""Fixtures for the admin and dashboard tests: configs, a prompt editor, calls with transcripts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.models import Group

from calls import services
from calls.models import AgentConfig, Call, PhoneNumber, Tool
from tests.web.helpers import add_conversation, logged_in_page, make_call

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def front_desk(db: Any) -> AgentConfig:
    config = AgentConfig.objects.create(
        name="Front desk",
        instructions=("You are the front desk of Acme Dental.\nBe brief and friendly.\nNever give medical advice."),
        greeting="Thanks for calling Acme Dental, how can I help?",
        is_default=True,
    )
    config.tools.set(services.ensure_builtin_tools())
    services.record_revision(config, None, comment="created by the test")
    return config


@pytest.fixture
def editor(db: Any, django_user_model: Any) -> Any:
    """A staff member in the "Prompt editors" group created by migration 0002."""
    user = django_user_model.objects.create_user("editor", "editor@example.com", "editor-pass-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Prompt editors"))
    return user


@pytest.fixture
def finished_call(front_desk: AgentConfig) -> Call:
    PhoneNumber.objects.create(number="+15550001111", label="Main line", agent_config=front_desk)
    call = make_call(front_desk)
    add_conversation(call)
    return call


@pytest.fixture
def http_tool(db: Any) -> Tool:
    return Tool.objects.create(
        name="lookup_order",
        kind=Tool.Kind.HTTP,
        description="Look up an order by id.",
        parameters={
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
        url="https://api.example.com/orders",
        timeout_s=4.0,
    )


@contextmanager
def launched_chromium(extra_args: tuple[str, ...] = ()) -> Iterator[Any]:
    """Debian's chromium through Playwright's sync API."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread, which makes Django refuse ORM calls
    # from the test body; the test really is synchronous, so allow them for these tests only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[*LAUNCH_ARGS, *extra_args])
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any, live_server: Any, admin_user: Any) -> Iterator[Any]:
    """A logged-in admin's tab; a JavaScript error fails the test."""
    tab = logged_in_page(browser, live_server.url)
    yield tab
    tab.context.close()
    assert tab.js_errors == [], f"JavaScript errors: {tab.js_errors}"
