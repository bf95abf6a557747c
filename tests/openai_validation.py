"""Test helper: is a dict a valid OpenAI Realtime GA client event, by the `openai` package's own types?

    from tests.openai_validation import validate_client_event
    validate_client_event(event)          # raises AssertionError with a readable message, else None

The `openai` models accept unknown keys (pydantic extra="allow") and so would let a misspelt or beta-only
field through, which the real API rejects with `unknown_parameter`. So after validating against
`RealtimeClientEvent` this also walks the parsed result and fails on any model holding extra keys.
Free-form JSON (a tool's `parameters` schema) is a plain dict in the types and is not policed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic
from openai.types.realtime import RealtimeClientEvent

__all__ = ["assert_valid_client_event", "unexpected_extras", "validate_client_event"]

_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeClientEvent)


def unexpected_extras(value: object, path: str = "") -> Iterator[str]:
    """Dotted paths of the unknown keys held by any pydantic model inside `value`."""
    if isinstance(value, pydantic.BaseModel):
        for key in value.model_extra or {}:
            yield f"{path}.{key}" if path else key
        for name in type(value).model_fields:
            yield from unexpected_extras(getattr(value, name, None), f"{path}.{name}" if path else name)
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            yield from unexpected_extras(child, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from unexpected_extras(child, f"{path}.{key}")


def validate_client_event(event: dict[str, Any]) -> None:
    """Raise AssertionError unless `event` validates as a GA client event with no unknown keys anywhere."""
    if not isinstance(event, dict):
        raise AssertionError(f"a client event is a JSON object, got {type(event).__name__}")
    try:
        parsed = _ADAPTER.validate_python(event)
    except pydantic.ValidationError as exc:
        raise AssertionError(f"{event.get('type')!r} is not a valid Realtime client event:\n{exc}") from None
    extras = list(unexpected_extras(parsed))
    if extras:
        raise AssertionError(f"{event.get('type')!r} has keys the Realtime API does not know: {', '.join(extras)}")


assert_valid_client_event = validate_client_event  # the name the bridge's own tests were first briefed with
