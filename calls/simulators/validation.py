"""Strict validation of OpenAI Realtime client events against the `openai` package's own types.

The `openai` models accept unknown keys silently (extra="allow"), so a misspelt field would pass a
plain parse. After parsing we walk the result and reject any model that collected extras: the real
API answers those with `unknown_parameter`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, get_args, get_origin

import pydantic
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent


def _adapters_by_type(union: Any) -> dict[str, pydantic.TypeAdapter[Any]]:
    """Map each event `type` literal to an adapter for its own model.

    Validating against the one member named by `type` (as the API does) gives precise error
    locations instead of a report from every union branch."""
    adapters: dict[str, pydantic.TypeAdapter[Any]] = {}
    members = get_args(get_args(union)[0]) if get_origin(union) is Annotated else get_args(union)
    for member in members:
        for literal in get_args(member.model_fields["type"].annotation):
            adapters[literal] = pydantic.TypeAdapter(member)
    return adapters


_CLIENT_EVENT_ADAPTERS = _adapters_by_type(RealtimeClientEvent)
_SERVER_EVENT_ADAPTERS = _adapters_by_type(RealtimeServerEvent)
CLIENT_EVENT_TYPES: frozenset[str] = frozenset(_CLIENT_EVENT_ADAPTERS)


class InvalidClientEvent(ValueError):
    """A client event the Realtime API would reject; `code`/`param` mirror the API's error fields."""

    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


def iter_extras(value: object, path: str = "") -> Iterator[str]:
    """Dotted paths of every unknown key held by pydantic models anywhere inside `value`."""
    if isinstance(value, pydantic.BaseModel):
        for key in value.model_extra or {}:
            yield f"{path}.{key}" if path else key
        for name in type(value).model_fields:
            child = getattr(value, name, None)
            yield from iter_extras(child, f"{path}.{name}" if path else name)
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            yield from iter_extras(child, f"{path}[{index}]")
    elif isinstance(value, dict):
        # Plain dicts (JSON-schema `parameters`, metadata) are free-form by design.
        for key, child in value.items():
            if isinstance(child, pydantic.BaseModel | list | dict):
                yield from iter_extras(child, f"{path}.{key}")


def _first_error(exc: pydantic.ValidationError) -> tuple[str, str | None]:
    errors = exc.errors(include_url=False)
    if not errors:
        return str(exc), None
    first = errors[0]
    param = ".".join(str(part) for part in first.get("loc", ())) or None
    if first.get("type") == "missing" and param:
        return f"Missing required parameter: '{param}'.", param
    return f"Invalid value for '{param}': {first.get('msg')}" if param else str(first.get("msg")), param


def validate_client_event(event: dict[str, Any]) -> Any:
    """Raise `InvalidClientEvent` unless `event` is a valid GA client event with no unknown fields.

    Returns the parsed `openai` model (handy for callers that want typed access)."""
    if not isinstance(event, dict):
        raise InvalidClientEvent("The event must be a JSON object.", code="invalid_json")
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise InvalidClientEvent(
            "Missing required parameter: 'type'.", code="missing_required_parameter", param="type"
        )
    adapter = _CLIENT_EVENT_ADAPTERS.get(event_type)
    if adapter is None:
        raise InvalidClientEvent(
            f"Invalid value: '{event_type}'. Supported values are: "
            + ", ".join(f"'{name}'" for name in sorted(CLIENT_EVENT_TYPES))
            + ".",
            param="type",
        )
    try:
        parsed = adapter.validate_python(event)
    except pydantic.ValidationError as exc:
        message, param = _first_error(exc)
        code = "missing_required_parameter" if exc.errors()[0].get("type") == "missing" else "invalid_value"
        raise InvalidClientEvent(message, code=code, param=param) from exc
    extras = list(iter_extras(parsed))
    if extras:
        raise InvalidClientEvent(
            f"Unknown parameter: '{extras[0]}'.", code="unknown_parameter", param=extras[0]
        )
    return parsed


def validate_server_event(event: dict[str, Any], *, allow_extras: bool = False) -> Any:
    """Parse a server event with the `openai` types (used by tests to keep the simulator honest).

    Raises `ValueError` when it does not parse or (unless `allow_extras`) carries unknown keys."""
    return _parse_event(event, _SERVER_EVENT_ADAPTERS, "server event", allow_extras)


# --- GPT-Live (`openai.types.live`) ----------------------------------------------------------------
# Same strictness as above, against the Live unions. One extra rule the types cannot express: the context
# appends document `delegation_id` as "Required, nullable", but the generated model gives it a default.
# (Imports kept with this block so that it stays one additive hunk beside concurrent edits above.)

from openai.types.live import ClientEvent as LiveClientEvent  # noqa: E402
from openai.types.live import ServerEvent as LiveServerEvent  # noqa: E402
from openai.types.responses import ResponseStreamEvent  # noqa: E402

_LIVE_CLIENT_EVENT_ADAPTERS = _adapters_by_type(LiveClientEvent)
_LIVE_SERVER_EVENT_ADAPTERS = _adapters_by_type(LiveServerEvent)
_RESPONSES_STREAM_EVENT_ADAPTERS = _adapters_by_type(ResponseStreamEvent)
LIVE_CLIENT_EVENT_TYPES: frozenset[str] = frozenset(_LIVE_CLIENT_EVENT_ADAPTERS)
_LIVE_REQUIRED_NULLABLE = {
    "session.instructions.append": ("delegation_id",),
    "session.thinking.append": ("delegation_id",),
    "session.commentary.append": ("delegation_id",),
}


def validate_live_client_event(event: dict[str, Any]) -> Any:
    """Raise `InvalidClientEvent` unless `event` is a valid GPT-Live client event with no unknown fields.

    Returns the parsed `openai.types.live` model."""
    if isinstance(event, dict):
        for key in _LIVE_REQUIRED_NULLABLE.get(str(event.get("type")), ()):
            if key not in event:
                raise InvalidClientEvent(
                    f"Missing required parameter: '{key}'.", code="missing_required_parameter", param=key
                )
    return _strict_client_event(event, _LIVE_CLIENT_EVENT_ADAPTERS)


def validate_live_server_event(event: dict[str, Any], *, allow_extras: bool = False) -> Any:
    """Parse a GPT-Live server event with the `openai` types (keeps the Live simulator honest in tests).

    Raises `ValueError` when it does not parse or (unless `allow_extras`) carries unknown keys."""
    return _parse_event(event, _LIVE_SERVER_EVENT_ADAPTERS, "Live server event", allow_extras)


def validate_live_backend_event(event: dict[str, Any]) -> Any:
    """Parse the Responses stream event wrapped in a Live `response.event` (typed there as a plain dict)
    with `openai.types.responses`, no unknown keys. Raises `ValueError`."""
    return _parse_event(event, _RESPONSES_STREAM_EVENT_ADAPTERS, "Responses stream event", False)


def _strict_client_event(event: object, adapters: dict[str, pydantic.TypeAdapter[Any]]) -> Any:
    """The strict client-event check against one union's adapters (see the module docstring)."""
    if not isinstance(event, dict):
        raise InvalidClientEvent("The event must be a JSON object.", code="invalid_json")
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise InvalidClientEvent("Missing required parameter: 'type'.", code="missing_required_parameter",
                                 param="type")
    adapter = adapters.get(event_type)
    if adapter is None:
        supported = ", ".join(f"'{name}'" for name in sorted(adapters))
        raise InvalidClientEvent(f"Invalid value: '{event_type}'. Supported values are: {supported}.", param="type")
    try:
        parsed = adapter.validate_python(event)
    except pydantic.ValidationError as exc:
        message, param = _first_error(exc)
        code = "missing_required_parameter" if exc.errors()[0].get("type") == "missing" else "invalid_value"
        raise InvalidClientEvent(message, code=code, param=param) from exc
    extras = list(iter_extras(parsed))
    if extras:
        raise InvalidClientEvent(f"Unknown parameter: '{extras[0]}'.", code="unknown_parameter", param=extras[0])
    return parsed


def _parse_event(event: dict[str, Any], adapters: dict[str, pydantic.TypeAdapter[Any]], label: str,
                 allow_extras: bool) -> Any:
    adapter = adapters.get(str(event.get("type")))
    if adapter is None:
        raise ValueError(f"unknown {label} type {event.get('type')!r}")
    try:
        parsed = adapter.validate_python(event)
    except pydantic.ValidationError as exc:
        raise ValueError(f"invalid {label} {event.get('type')!r}: {exc}") from exc
    if not allow_extras:
        extras = list(iter_extras(parsed))
        if extras:
            raise ValueError(f"{label} {event.get('type')!r} has unknown keys: {extras}")
    return parsed
