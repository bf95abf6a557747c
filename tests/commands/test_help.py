"""Every voiceops command explains itself: a help line, and help text for every option it adds."""

from __future__ import annotations

import argparse

import pytest
from django.core.management import get_commands, load_command_class

# Options every Django command inherits; Django documents them.
BASE_OPTIONS = {"-h", "--help", "--version", "-v", "--verbosity", "--settings", "--pythonpath", "--traceback",
                "--no-color", "--force-color", "--skip-checks"}
OURS = sorted(name for name, app in get_commands().items() if app in {"calls", "bridge", "lambda_webhook"})


def test_there_are_commands_to_check():
    assert {"check_config", "simulate_call", "loadtest", "seed_demo", "runbridge"} <= set(OURS)


@pytest.mark.parametrize("name", OURS)
def test_every_option_has_help(name):
    command = load_command_class(get_commands()[name], name)
    assert command.help.strip(), f"{name} has no help line"
    parser = command.create_parser("manage.py", name)
    missing = [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not set(action.option_strings) & BASE_OPTIONS
        and not isinstance(action, argparse._HelpAction)
        and not (action.help or "").strip()
    ]
    assert missing == [], f"{name}: options without help: {missing}"
