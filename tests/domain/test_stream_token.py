from __future__ import annotations

import time

import pytest
from django.core import signing

from calls import stream_token
from calls.stream_token import StreamGrant, TokenRejected

CALL = "CA" + "a" * 32
OTHER_CALL = "CA" + "b" * 32


@pytest.fixture
def later(monkeypatch):
    """Move the clock the signer reads forward by `seconds`."""

    def move(seconds: float) -> None:
        real = time.time
        monkeypatch.setattr(signing.time, "time", lambda: real() + seconds)

    return move


def test_a_fresh_token_grants_its_call_and_config():
    token = stream_token.mint(CALL, 7)
    assert stream_token.verify(token, CALL) == StreamGrant(call_sid=CALL, config_id=7)


def test_token_fits_a_twiml_parameter():
    token = stream_token.mint(CALL, 7)
    assert len(token) < 200
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_:.")


@pytest.mark.parametrize("token", [None, ""])
def test_missing(token):
    with pytest.raises(TokenRejected) as rejected:
        stream_token.verify(token, CALL)
    assert rejected.value.reason == "missing stream token"


def test_forged_signature():
    token = stream_token.mint(CALL, 7)
    value, signature = token.rsplit(":", 1)
    forged = value + ":" + ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(TokenRejected, match="stream token invalid"):
        stream_token.verify(forged, CALL)


def test_token_signed_with_another_key(settings):
    settings.SECRET_KEY = "another-deployment-" + "k" * 50
    foreign = stream_token.mint(CALL, 7)
    settings.SECRET_KEY = "this-deployment-" + "q" * 50
    with pytest.raises(TokenRejected, match="stream token invalid"):
        stream_token.verify(foreign, CALL)


def test_token_for_another_purpose_is_invalid():
    # Same key, different salt: a value signed elsewhere in Django is not a stream token.
    other = signing.dumps({"c": CALL, "a": 7}, compress=False)
    with pytest.raises(TokenRejected, match="stream token invalid"):
        stream_token.verify(other, CALL)


def test_garbage():
    with pytest.raises(TokenRejected, match="stream token invalid"):
        stream_token.verify("not-a-token", CALL)


def test_expires_after_the_ttl(settings, later):
    settings.STREAM_TOKEN_TTL_S = 60
    token = stream_token.mint(CALL, 7)

    later(59)
    assert stream_token.verify(token, CALL).call_sid == CALL
    later(61)
    with pytest.raises(TokenRejected, match="stream token expired"):
        stream_token.verify(token, CALL)


def test_explicit_max_age_overrides_the_setting(settings, later):
    settings.STREAM_TOKEN_TTL_S = 3600
    token = stream_token.mint(CALL, 7)
    later(11)
    with pytest.raises(TokenRejected, match="expired"):
        stream_token.verify(token, CALL, max_age_s=10)


def test_token_for_another_call():
    token = stream_token.mint(CALL, 7)
    with pytest.raises(TokenRejected) as rejected:
        stream_token.verify(token, OTHER_CALL)
    assert rejected.value.reason == "stream token is for another call"
