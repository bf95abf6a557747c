"""The one OpenAI event validator (calls.simulators.validation, shared by the simulator and the tests) must be
able to fail: beta fields, typos, wrong types, unknown events."""

from __future__ import annotations

import copy

import pytest

from calls.simulators.validation import InvalidClientEvent, validate_client_event

GOOD = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"voice": "marin"}},
        "tools": [{"type": "function", "name": "f", "description": "d",
                   "parameters": {"type": "object", "properties": {"x": {"type": "string", "anything": 1}}}}],
    },
}


def changed(path: tuple[str | int, ...], value: object) -> dict:
    event = copy.deepcopy(GOOD)
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


def test_a_good_event_passes_and_free_form_schemas_are_not_policed():
    assert validate_client_event(GOOD).type == "session.update"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (changed(("session", "temperature"), 0.8), "session.temperature"),  # beta-only field
        (changed(("session", "audio", "input", "formatt"), {}), "session.audio.input.formatt"),
        (changed(("session", "tools", 0, "kind"), "http"), "session.tools[0].kind"),
        (changed(("session", "audio", "output", "speed"), "fast"), "speed"),
        (changed(("session", "audio", "input", "format", "type"), "g711_ulaw"), "format"),
        (changed(("session", "type"), "conversation"), "session"),
        ({"type": "input_audio_buffer.append", "audio": "AAAA", "extra": 1}, "extra"),
        ({"type": "input_audio_buffer.append"}, "audio"),
        ({"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": 5}, "content_index"),
        ({"type": "response.audio.delta"}, "Supported values"),
        ({"audio": "AAAA"}, "type"),
    ],
)
def test_bad_events_fail_with_a_clear_message(event, message):
    with pytest.raises(InvalidClientEvent, match=message.replace(".", r"\.").replace("[", r"\[")):
        validate_client_event(event)


def test_not_a_dict():
    with pytest.raises(InvalidClientEvent, match="JSON object"):
        validate_client_event('{"type": "response.create"}')  # type: ignore[arg-type]
