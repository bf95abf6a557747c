"""Field validators with messages staff can act on."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def validate_e164(value: str) -> None:
    if not E164.match(value or ""):
        raise ValidationError(
            "%(value)s is not an E.164 number: a + then the country code and number, digits only, "
            "e.g. +14155550123.",
            params={"value": value},
        )


def validate_time_zone(value: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            "%(value)s is not a time zone name (IANA, e.g. Europe/Paris or America/New_York).",
            params={"value": value},
        ) from None


def validate_https_url(value: str) -> None:
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValidationError("Tool URLs must use https:// (the request carries caller data and a secret).")
    if parts.username or parts.password:
        raise ValidationError("Put credentials in the secret header, not in the URL.")


def validate_model_name(value: str) -> None:
    if not re.match(r"^gpt-[a-z0-9.\-]*(realtime|live)[a-z0-9.\-]*$", value or ""):
        raise ValidationError(
            "%(value)s is not an OpenAI voice model (e.g. gpt-realtime-2.1 or gpt-live-1.1).", params={"value": value}
        )


def empty_parameters_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}, "required": []}


def validate_parameters_schema(value: Any) -> None:
    """The tool's arguments must be described by a valid JSON Schema of an object."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(value, dict):
        raise ValidationError("Parameters must be a JSON object (a JSON Schema), not %(kind)s.",
                              params={"kind": type(value).__name__})
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ValidationError(
            "Invalid JSON Schema at %(where)s: %(msg)s", params={"where": where, "msg": exc.message}
        ) from None
    if value.get("type") != "object":
        raise ValidationError('The schema must describe an object: {"type": "object", "properties": {...}}.')
    if not isinstance(value.get("properties", {}), dict):
        raise ValidationError('"properties" must be an object mapping argument names to schemas.')
