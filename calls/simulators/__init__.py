"""Faithful stand-ins for voiceops' two external edges, for tests, load tests and local calls.

- `realtime_server`: an OpenAI Realtime (GA) WebSocket server on loopback.
- `twilio_caller`: Twilio's side of an inbound call (signed webhook, TwiML, Media Streams).
- `audio`: G.711 μ-law codec, WAV helpers and synthetic speech-like audio.
- `validation`: strict client-event validation against the `openai` package's types.

Plain Python + websockets + twilio; nothing here imports Django.
"""
