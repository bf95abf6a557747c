#!/usr/bin/env python
"""Django's command-line utility for voiceops."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceops.settings")
    from django.conf import settings

    from voiceops.env import SettingsError

    try:
        settings.INSTALLED_APPS  # noqa: B018 -- reads the environment once, here, to report it plainly
    except SettingsError as refusal:
        # One line per bad variable, no traceback. check_config reports them as its failed checks.
        if sys.argv[1:2] == ["check_config"]:
            from voiceops.env import print_settings_report

            sys.exit(print_settings_report(refusal.problems))
        for problem in refusal.problems:
            sys.stderr.write(f"voiceops: bad setting: {problem}\n")
        sys.exit(2)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
