"""Production images leave `calls.simulators` out: the commands that need it refuse with a clear message (and
every other command, the dashboard's test-call page included, still loads)."""

from __future__ import annotations

import importlib
import sys

import pytest
from django.core.management import CommandError, call_command

from calls.management.commands import _simulators


@pytest.fixture
def without_simulators(monkeypatch: pytest.MonkeyPatch):
    for name in [n for n in sys.modules if n.startswith("calls.simulators")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "calls.simulators", None)  # what a missing package looks like to import
    for command in ("simulate_call", "loadtest"):
        monkeypatch.delitem(sys.modules, f"calls.management.commands.{command}", raising=False)
    yield
    for command in ("simulate_call", "loadtest"):
        sys.modules.pop(f"calls.management.commands.{command}", None)


@pytest.mark.parametrize(("command", "args"), [("simulate_call", ["--to", "+15005550006"]), ("loadtest", [])])
def test_commands_that_play_twilio_say_the_simulators_are_missing(without_simulators, command, args):
    importlib.import_module(f"calls.management.commands.{command}")
    with pytest.raises(CommandError, match="simulators"):
        call_command(command, *args)
    assert "production images leave them out" in _simulators.MISSING
