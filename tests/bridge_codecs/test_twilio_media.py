"""The Twilio Media Streams codec: documented frame shapes in, ProtocolError for everything malformed."""

from __future__ import annotations

import base64
import json

import pytest

from bridge import twilio_media as tw

STREAM_SID = "MZ" + "1" * 32
CALL_SID = "CA" + "2" * 32
ACCOUNT_SID = "AC" + "3" * 32
PAYLOAD = base64.b64encode(bytes(range(160))).decode()  # 20 ms of μ-law


def media_frame(**media_overrides: object) -> dict:
    media = {"track": "inbound", "chunk": "3", "timestamp": "40", "payload": PAYLOAD, **media_overrides}
    return {"event": "media", "sequenceNumber": "4", "streamSid": STREAM_SID, "media": media}


def start_frame(**start_overrides: object) -> dict:
    start = {
        "streamSid": STREAM_SID,
        "accountSid": ACCOUNT_SID,
        "callSid": CALL_SID,
        "tracks": ["inbound"],
        "customParameters": {"token": "abc.def"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        **start_overrides,
    }
    return {"event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID, "start": start}


def parse(frame: object) -> tw.TwilioMessage:
    return tw.parse(json.dumps(frame))


def reason_for(frame: object) -> str:
    with pytest.raises(tw.ProtocolError) as caught:
        tw.parse(frame if isinstance(frame, str | bytes) else json.dumps(frame))
    assert caught.value.reason and str(caught.value) == caught.value.reason
    return caught.value.reason


# --- inbound: the documented shapes ----------------------------------------------------------------------


def test_connected():
    assert parse({"event": "connected", "protocol": "Call", "version": "1.0.0"}) == tw.Connected("Call", "1.0.0")


def test_start():
    message = parse(start_frame())
    assert message == tw.Start(
        stream_sid=STREAM_SID,
        call_sid=CALL_SID,
        account_sid=ACCOUNT_SID,
        custom_parameters={"token": "abc.def"},
        media_format={"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        tracks=("inbound",),
    )


def test_start_falls_back_to_the_top_level_stream_sid():
    frame = start_frame()
    del frame["start"]["streamSid"]
    assert parse(frame).stream_sid == STREAM_SID


def test_start_without_custom_parameters_has_none():
    frame = start_frame()
    del frame["start"]["customParameters"]
    assert parse(frame).custom_parameters == {}


def test_media_keeps_the_payload_string_as_sent():
    message = parse(media_frame())
    assert type(message) is tw.Media
    assert message == tw.Media(payload_b64=PAYLOAD, timestamp_ms=40, track="inbound")
    assert message.payload_b64 is not None and message.payload_b64 == PAYLOAD


def test_media_accepts_bytes_and_an_integer_timestamp():
    assert tw.parse(json.dumps(media_frame(timestamp=1200)).encode()).timestamp_ms == 1200


def test_media_with_an_empty_payload_is_zero_bytes_not_an_error():
    assert parse(media_frame(payload="")).payload_b64 == ""


def test_mark_dtmf_stop():
    assert parse({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "p7"}}) == tw.Mark("p7")
    dtmf = {"event": "dtmf", "streamSid": STREAM_SID, "dtmf": {"track": "inbound_track", "digit": "5"}}
    assert parse(dtmf) == tw.Dtmf("5", "inbound_track")
    stop = {"event": "stop", "streamSid": STREAM_SID, "stop": {"accountSid": ACCOUNT_SID, "callSid": CALL_SID}}
    assert parse(stop) == tw.Stop(call_sid=CALL_SID, account_sid=ACCOUNT_SID)
    assert parse({"event": "stop", "streamSid": STREAM_SID}) == tw.Stop()


# --- inbound: malformed frames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('"media"', "not a JSON object"),
        ("null", "not a JSON object"),
        ("{}", "no event"),
        ('{"event": 5}', "no event"),
        ('{"event": "hello"}', "unknown event 'hello'"),
        ('{"event": "' + "x" * 500 + '"}', "unknown event"),
    ],
)
def test_frames_that_are_not_messages(raw, expected):
    reason = reason_for(raw)
    assert expected in reason
    assert len(reason) < 80  # it goes into a WebSocket close frame (123 bytes at most)


@pytest.mark.parametrize(
    "frame",
    [
        {"event": "media"},
        {"event": "media", "media": None},
        {"event": "media", "media": "AAAA"},
        media_frame(payload=None),
        media_frame(payload=123),
        media_frame(payload="AAA"),  # length not a multiple of 4
        media_frame(payload="AA=A"),  # padding in the middle
        media_frame(payload="AAA==="),
        media_frame(payload='AA"}'),  # would break the JSON it is spliced into
        media_frame(payload="AA\nA"),
        media_frame(payload="AA-_"),  # URL-safe alphabet is not what Twilio sends
        media_frame(timestamp=None),
        media_frame(timestamp="abc"),
        media_frame(timestamp="-5"),
        media_frame(timestamp=-5),
        media_frame(timestamp="²"),
        media_frame(timestamp=1.5),
        media_frame(timestamp=True),
        media_frame(track=None),
        media_frame(track=1),
    ],
)
def test_malformed_media(frame):
    assert "media" in reason_for(frame)


@pytest.mark.parametrize("field", ["payload", "timestamp", "track"])
def test_media_missing_a_field(field):
    frame = media_frame()
    del frame["media"][field]
    assert "media" in reason_for(frame)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"event": "start"}, "start frame without a start object"),
        (start_frame(streamSid=None) | {"streamSid": None}, "start.streamSid"),
        (start_frame(callSid=None), "start.callSid"),
        (start_frame(callSid=""), "start.callSid"),
        (start_frame(accountSid=7), "start.accountSid"),
        (start_frame(customParameters=["token"]), "customParameters"),
        (start_frame(customParameters={"token": 5}), "customParameters"),
        (start_frame(mediaFormat=None), "mediaFormat"),
        (start_frame(mediaFormat={"encoding": "audio/l16", "sampleRate": 8000, "channels": 1}), "audio/x-mulaw"),
        (start_frame(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1}), "8000"),
        (start_frame(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2}), "mono"),
        (start_frame(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": "8000"}), "8000"),
        (start_frame(tracks="inbound"), "tracks"),
        (start_frame(tracks=[1]), "tracks"),
    ],
)
def test_malformed_start(frame, expected):
    assert expected in reason_for(frame)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"event": "mark"}, "mark frame without a mark object"),
        ({"event": "mark", "mark": {}}, "mark.name"),
        ({"event": "mark", "mark": {"name": 3}}, "mark.name"),
        ({"event": "dtmf", "dtmf": {"track": "inbound_track"}}, "dtmf.digit"),
        ({"event": "dtmf", "dtmf": {"digit": "1", "track": 5}}, "dtmf.track"),
        ({"event": "dtmf", "dtmf": []}, "dtmf frame without"),
        ({"event": "stop", "stop": "now"}, "stop is not an object"),
        ({"event": "stop", "stop": {"callSid": 1}}, "stop.callSid"),
        ({"event": "connected", "version": 1}, "version"),
    ],
)
def test_malformed_other_events(frame, expected):
    assert expected in reason_for(frame)


def test_deeply_nested_json_is_a_protocol_error_not_a_crash():
    assert "JSON" in reason_for("[" * 100_000 + "]" * 100_000)


# --- outbound ----------------------------------------------------------------------------------------------


def test_media_message_passes_the_payload_through():
    text = tw.media_message(STREAM_SID, PAYLOAD)
    assert json.loads(text) == {"event": "media", "streamSid": STREAM_SID, "media": {"payload": PAYLOAD}}
    assert PAYLOAD in text  # spliced in, not re-encoded


def test_mark_and_clear_messages():
    assert json.loads(tw.mark_message(STREAM_SID, "p12")) == {
        "event": "mark", "streamSid": STREAM_SID, "mark": {"name": "p12"}
    }
    assert json.loads(tw.clear_message(STREAM_SID)) == {"event": "clear", "streamSid": STREAM_SID}


@pytest.mark.parametrize("awkward", ['a"b', "back\\slash", "new\nline", "ünïcode", "", "end-1"])
def test_builders_escape_awkward_sids_and_names(awkward):
    assert json.loads(tw.mark_message(awkward, awkward)) == {
        "event": "mark", "streamSid": awkward, "mark": {"name": awkward}
    }
    assert json.loads(tw.clear_message(awkward))["streamSid"] == awkward
    assert json.loads(tw.media_message(awkward, PAYLOAD))["streamSid"] == awkward


def test_outbound_frames_parse_back_where_the_shapes_overlap():
    # Twilio echoes marks in the same shape we send them.
    assert tw.parse(tw.mark_message(STREAM_SID, "p3")) == tw.Mark("p3")


# --- audio arithmetic --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 159, 160, 161, 4800])
def test_b64_audio_len_matches_decoding(size):
    encoded = base64.b64encode(bytes(size)).decode()
    assert tw.b64_audio_len(encoded) == size
    assert tw.b64_audio_len(encoded.rstrip("=")) == size  # unpadded base64 counts the same


def test_mulaw_rate():
    assert tw.b64_audio_len(PAYLOAD) // tw.MULAW_BYTES_PER_MS == 20


def test_is_base64_shaped():
    assert tw.is_base64_shaped(PAYLOAD) and tw.is_base64_shaped("") and tw.is_base64_shaped("AB+/AA==")
    assert not tw.is_base64_shaped("AB") and not tw.is_base64_shaped("A B=") and not tw.is_base64_shaped("====")


# --- the fast path for Twilio's media frames: the same result as the full parse, or the full parse ------------

TWILIO_MEDIA = ('{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"3","timestamp":"40",'
                '"payload":"' + PAYLOAD + '"},"streamSid":"' + STREAM_SID + '"}')


def outcome(parse, text: str) -> object:
    try:
        return parse(text)
    except tw.ProtocolError as exc:
        return ("ProtocolError", exc.reason)


def assert_same_as_full_parse(text: str) -> None:
    assert outcome(tw.parse, text) == outcome(tw.parse_json, text), text


@pytest.mark.parametrize("text", [
    TWILIO_MEDIA,
    json.dumps(media_frame(), separators=(",", ":")),  # streamSid before media (the simulator's order)
    TWILIO_MEDIA.replace(',"streamSid":"' + STREAM_SID + '"', ""),  # no streamSid
    ' {\n\t"event" : "media" ,\r"sequenceNumber":"4", "media": {"track":"inbound","chunk":"3","timestamp":"40",'
    ' "payload" : "' + PAYLOAD + '" } , "streamSid":"' + STREAM_SID + '" }\n',  # JSON whitespace anywhere
    TWILIO_MEDIA.replace('"inbound"', '"outbound"'),
    TWILIO_MEDIA.replace('"inbound"', '"inbound_track"'),
    TWILIO_MEDIA.replace(PAYLOAD, ""),
    TWILIO_MEDIA.replace(PAYLOAD, "AB=="),
    TWILIO_MEDIA.replace(PAYLOAD, "ABC="),
])
def test_twilio_media_frames_take_the_fast_path_with_the_full_parse_result(text):
    assert tw._MEDIA(text) is not None
    assert_same_as_full_parse(text)
    assert type(tw.parse(text)) is tw.Media


@pytest.mark.parametrize("text", [
    TWILIO_MEDIA.replace('"track":"inbound"', '"track":"in\\"bound"'),  # an escaped quote in a value
    TWILIO_MEDIA.replace('"track":"inbound"', '"track":"inbound\\\\"'),  # an escaped backslash
    TWILIO_MEDIA.replace('"track":"inbound"', '"track":"\\u0069nbound"'),  # a \\u escape
    TWILIO_MEDIA.replace('"payload"', '"\\u0070ayload"'),  # an escaped key
    TWILIO_MEDIA.replace(PAYLOAD, PAYLOAD[:-4] + "AB\\/="),  # \/ is / in JSON
    TWILIO_MEDIA.replace('"chunk":"3","timestamp":"40"', '"timestamp":"40","chunk":"3"'),  # reordered keys
    TWILIO_MEDIA.replace('"track":"inbound",', '"track":"inbound","extra":"1",'),  # an extra key
    TWILIO_MEDIA.replace('"sequenceNumber":"4",', '"sequenceNumber":"4","event":"mark",'),  # a duplicate key
    TWILIO_MEDIA.replace('{"track"', '{"track":"outbound","track"'),  # a duplicate key, last one wins
    TWILIO_MEDIA.replace('"timestamp":"40"', '"timestamp":40'),  # an integer timestamp
    TWILIO_MEDIA.replace('"timestamp":"40"', '"timestamp":"4\u0660"'),  # a non-ASCII digit
    TWILIO_MEDIA.replace('"timestamp":"40"', '"timestamp":""'),
    TWILIO_MEDIA.replace('"media":{', '"media":\u00a0{'),  # Unicode whitespace is not JSON whitespace
    TWILIO_MEDIA.replace('"media":{', '"media":\x0b{'),
    TWILIO_MEDIA + "\x0c",
    "\ufeff" + TWILIO_MEDIA,
    TWILIO_MEDIA + "{}",
    TWILIO_MEDIA.replace(PAYLOAD, PAYLOAD[:-1]),  # not a multiple of 4
    TWILIO_MEDIA.replace(PAYLOAD, "AB=C"),
    TWILIO_MEDIA.replace(PAYLOAD, "A==="),
    TWILIO_MEDIA.replace(PAYLOAD, PAYLOAD[:-4] + "AB\n="),
    TWILIO_MEDIA.replace('"track":"inbound"', '"track":null'),
    TWILIO_MEDIA[:-1],  # truncated
])
def test_anything_else_gets_exactly_the_full_parse(text):
    assert_same_as_full_parse(text)


def test_bytes_take_the_full_parse():
    assert tw.parse(TWILIO_MEDIA.encode()) == tw.parse(TWILIO_MEDIA)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

JSON_WS = st.text(alphabet=" \t\n\r", max_size=2)
HOSTILE_CHARS = ' \t\n\r"\\/=+{}:,\x00\x0b\x0c\u00a0\u2028\ufeff\u06600aZ'
VALUE = st.one_of(
    st.sampled_from(["inbound", "outbound", "inbound_track", "", "4", "40", "4\u0660", "\u0661\u0662", PAYLOAD,
                     PAYLOAD[:-1], "AB==", "ABC=", "AB=C", STREAM_SID]),
    st.text(alphabet=HOSTILE_CHARS, max_size=6),
    st.text(max_size=6),
)


@st.composite
def media_like(draw) -> str:
    """Twilio-shaped media frames, each part changed now and then: whitespace, key order, values, escapes, extra
    or missing keys (about a third come out in Twilio's own shape, the fast path's)."""
    def rare() -> bool:
        return draw(st.integers(0, 11)) == 0

    def obj(pairs: list[tuple[str, str]]) -> str:
        if rare():
            pairs = draw(st.permutations(pairs))
        if rare():
            pairs = [*pairs, (draw(st.sampled_from(["extra", "track", "event", "payload"])), '"x"')]
        if rare():
            pairs = pairs[:-1]
        ws = JSON_WS if rare() else st.just("")
        return "{" + ",".join(draw(ws) + json.dumps(k) + draw(ws) + ":" + draw(ws) + v + draw(ws)
                              for k, v in pairs) + "}"

    def string(default: str) -> str:
        value = draw(VALUE) if rare() else default
        quoted = json.dumps(value, ensure_ascii=draw(st.booleans()))
        if rare():  # a hand-written escape or an invalid one
            quoted = quoted[:-1] + draw(st.sampled_from(['\\"', "\\\\", "\\/", "\\u0041", "\\x", "\\"])) + '"'
        return quoted

    media = obj([("track", string("inbound")), ("chunk", string("3")), ("timestamp", string("40")),
                 ("payload", string(PAYLOAD))])
    pairs = [("event", string("media")), ("sequenceNumber", string("4")), ("media", media)]
    if not rare():
        pairs.insert(draw(st.integers(2, 3)), ("streamSid", string(STREAM_SID)))
    return (draw(JSON_WS) if rare() else "") + obj(pairs) + (draw(JSON_WS) if rare() else "")


@hypothesis.settings(max_examples=1500, deadline=None)
@hypothesis.given(media_like())
def test_fuzz_media_like_frames_parse_as_the_full_parse_does(text):
    assert_same_as_full_parse(text)


@hypothesis.settings(max_examples=1500, deadline=None)
@hypothesis.given(st.integers(0, len(TWILIO_MEDIA) - 1), st.integers(0, 2), st.text(alphabet=HOSTILE_CHARS, max_size=3))
def test_fuzz_edits_of_a_twilio_frame_parse_as_the_full_parse_does(at, cut, insert):
    assert_same_as_full_parse(TWILIO_MEDIA[:at] + insert + TWILIO_MEDIA[at + cut:])
