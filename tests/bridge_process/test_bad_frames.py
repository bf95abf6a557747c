"""Malformed WebSocket frames on the bridge's /media-stream get a close handshake with the protocol's code and
a reason (1007 invalid UTF-8, 1009 too big), not a dropped TCP connection: Twilio's logs (and ours) say why."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bridge.server import MAX_MESSAGE_BYTES
from tests.bridge_process.conftest import BridgeProcess

pytestmark = pytest.mark.e2e


def send_raw_text(ws: ClientConnection, data: bytes) -> None:
    """A text frame with exactly these bytes (the client library would refuse to encode invalid UTF-8)."""
    with ws.send_context():
        ws.protocol.send_text(data)


def close_received(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None, "the bridge dropped the connection without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.fixture
def bridge(start_bridge) -> BridgeProcess:
    return start_bridge()


def test_invalid_utf8_closes_with_1007_and_a_reason(bridge: BridgeProcess) -> None:
    with connect(bridge.ws, open_timeout=5) as ws:
        send_raw_text(ws, b'{"event": "connected", "x": "\xc3\x28"}')
        code, reason = close_received(ws)
    assert code == 1007 and reason


def test_a_message_over_the_size_limit_closes_with_1009_and_a_reason(bridge: BridgeProcess) -> None:
    with connect(bridge.ws, open_timeout=5, max_size=None) as ws:
        ws.send('{"event": "media", "media": {"payload": "' + "A" * MAX_MESSAGE_BYTES + '"}}')
        code, reason = close_received(ws)
    assert code == 1009 and reason


def test_a_normal_sized_message_is_not_refused(bridge: BridgeProcess) -> None:
    with connect(bridge.ws, open_timeout=5) as ws:
        ws.send('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)  # still open, waiting for `start`
