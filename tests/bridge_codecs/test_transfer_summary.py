"""The warm transfer's whisper text: from the conversation's lines and the model's reason, short, no numbers."""

from __future__ import annotations

from bridge.transfer import MAX_SUMMARY_CHARS, reason_from_arguments, transfer_summary


def test_reason_and_the_callers_last_lines():
    transcript = [("agent", "Hello, Acme Dental."), ("caller", "Hi, I have a question about my bill."),
                  ("agent", "Sure."), ("caller", "I was charged twice."), ("caller", "Can I talk to someone?")]
    summary = transfer_summary("Front desk", transcript, "billing dispute")
    assert summary == ("A call transferred by the Front desk assistant. Reason: billing dispute. The caller said: "
                       "“I was charged twice.” … “Can I talk to someone?”")


def test_nothing_said_and_no_reason():
    assert transfer_summary("", [], "  ") == "A call transferred by the voice assistant."


def test_phone_numbers_are_not_read_out_and_the_length_is_bounded():
    transcript = [("caller", "Call me back on +1 (415) 555-0123 please. " + "blah " * 200)]
    summary = transfer_summary("Front desk", transcript, "callback " * 100)
    assert "555" not in summary and "a number" in summary
    assert len(summary) <= MAX_SUMMARY_CHARS


def test_reason_from_arguments():
    assert reason_from_arguments('{"reason": "a question about a bill"}') == "a question about a bill"
    assert reason_from_arguments("not json") == ""
    assert reason_from_arguments('["reason"]') == ""
    assert reason_from_arguments('{"reason": 5}') == ""
    assert reason_from_arguments("") == ""
