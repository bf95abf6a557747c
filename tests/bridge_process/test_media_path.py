"""The media consumer needs runbridge's server: its `voiceops.media_path` extension is how both sockets' audio
moves without awaiting (bridge/media_path.py). Under any other ASGI server (the web app's daphne, a test
communicator) a stream is refused with 4503 and a reason, never half-served."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings

from bridge.consumer import CLOSE_UNAVAILABLE, MediaStreamConsumer
from calls.simulators.twilio_caller import compute_signature


@pytest.mark.django_db
async def test_a_stream_without_the_media_path_extension_is_refused_with_a_reason(twilio_settings) -> None:
    signature = compute_signature(settings.BRIDGE_PUBLIC_URL, {}, settings.TWILIO_AUTH_TOKEN)
    communicator = WebsocketCommunicator(MediaStreamConsumer.as_asgi(), "/media-stream",
                                         headers=[(b"x-twilio-signature", signature.encode())])
    connected, code = await communicator.connect()
    assert (connected, code) == (False, CLOSE_UNAVAILABLE)
    await communicator.disconnect()
