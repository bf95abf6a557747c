"""Reading settings from the environment, with one clear line per bad variable.

`Environment` reads each variable, remembers what is wrong with it (and uses the default meanwhile, so that
every problem is found in one pass), and `raise_problems()` refuses to go on with one line per variable.
`manage.py` prints those lines without a traceback; `check_config` prints them as its report.
No Django import here: this runs while the settings module itself is being read.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Variables whose value may carry a password: named in a problem, never echoed.
_SECRET_VALUES = {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "OPENAI_API_KEY", "TWILIO_AUTH_TOKEN"}


class SettingsError(ImproperlyConfigured):
    """The settings refuse to load; `problems` holds one line per bad variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class Environment:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.problems: list[str] = []

    def problem(self, name: str, what: str) -> None:
        raw = self.environ.get(name)
        shown = "" if raw is None or name in _SECRET_VALUES else f"={raw!r}"
        self.problems.append(f"{name}{shown} {what}")

    def str(self, name: str, default: str = "") -> str:
        return self.environ.get(name, default)

    def list(self, name: str, default: list[str]) -> list[str]:
        """A comma list with blanks trimmed: "a.com, b.com" must match the Host header b.com."""
        raw = self.environ.get(name)
        return list(default) if raw is None else [item.strip() for item in raw.split(",") if item.strip()]

    def bool(self, name: str, default: bool) -> bool:
        raw = self.environ.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        self.problem(name, "is not a yes/no value: use 1 or 0 (also true/false, yes/no, on/off)")
        return default

    def int(self, name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            self.problem(name, f"is not a whole number (e.g. {default})")
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"{minimum if minimum is not None else '…'}-{maximum if maximum is not None else '…'}"
            self.problem(name, f"is out of range ({bounds})")
            return default
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.environ.get(name, default)
        if value not in choices:
            self.problem(name, f"must be one of {', '.join(choices)}")
            return default
        return value

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        """A URL whose shape is right: one of `schemes`, a host, a numeric port if any, no spaces."""
        value = self.environ.get(name, default).strip()
        if not url_has_shape(value, schemes):
            self.problem(name, f"is not a {' or '.join(f'{s}://' for s in schemes)} URL with a host "
                               f"(e.g. {default or schemes[0] + '://host'})")
            return default
        return value

    def required(self, name: str, why: str) -> None:
        self.problems.append(f"{name} {why}")

    def raise_problems(self) -> None:
        if self.problems:
            raise SettingsError(self.problems)


def url_has_shape(value: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname) and " " not in value


def print_settings_report(problems: list[str]) -> int:
    """check_config's report when the settings themselves do not load; returns its exit code."""
    lines = ["voiceops configuration — the settings do not load:", *(f"  ✗ {problem}" for problem in problems),
             f"{len(problems)} failed: fix these variables, then run check_config again for the rest"]
    sys.stdout.write("\n".join(lines) + "\n")
    return 1
