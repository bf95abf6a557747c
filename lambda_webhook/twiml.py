"""TwiML replies, built with the twilio library's own classes."""

from __future__ import annotations

from twilio.twiml.voice_response import VoiceResponse

VOICE = "Polly.Joanna"

APOLOGY = "Sorry, our assistant is not available right now. Please call again later. Goodbye."
UPSTREAM_APOLOGY = "Sorry, we are having technical trouble and have to end this call. Please call again. Goodbye."
TIME_LIMIT = "We have reached the time limit for this call. Thank you for calling. Goodbye."
DRAINED = "Sorry, we have to end this call now. Please call again. Goodbye."


def connect_stream(stream_url: str, token: str, status_url: str, action_url: str, traceparent: str = "") -> str:
    """<Connect><Stream> to the bridge. The token rides in a <Parameter> since the URL takes no query, and so does
    the webhook's W3C `traceparent` when it is traced, so that the bridge continues the same trace.
    When the bridge closes the stream, Twilio asks `action_url` what to do next."""
    response = VoiceResponse()
    connect = response.connect(action=action_url, method="POST")
    stream = connect.stream(url=stream_url, status_callback=status_url, status_callback_method="POST")
    stream.parameter(name="token", value=token)
    if traceparent:
        stream.parameter(name="traceparent", value=traceparent)
    return str(response)


def current_traceparent() -> str:
    """The active span's W3C traceparent, or "" (no span, or OpenTelemetry absent: the Lambda gets it from the
    ADOT layer, not from our requirements)."""
    try:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return ""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")


def say_and_hang_up(text: str) -> str:
    response = VoiceResponse()
    response.say(text, voice=VOICE)
    response.hangup()
    return str(response)


TRANSFER_UNANSWERED = "Sorry, nobody could take your call right now. Please call again later. Goodbye."
TRANSFER_RING_S = 25


def transfer(number: str, caller_id: str | None, action_url: str, whisper_url: str | None = None) -> str:
    """<Dial> the person. A warm transfer names a whisper URL: Twilio fetches it when the person answers and
    plays its TwiML to them alone before bridging the caller. Whatever happens, Twilio then asks
    `action_url` (DialCallStatus) what comes next."""
    response = VoiceResponse()
    dial = response.dial(caller_id=caller_id or None, timeout=TRANSFER_RING_S, action=action_url, method="POST")
    if whisper_url:
        dial.number(number, url=whisper_url, method="POST")
    else:
        dial.number(number)
    return str(response)


def whisper(text: str) -> str:
    response = VoiceResponse()
    response.say(text, voice=VOICE)
    return str(response)


def hang_up() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)
