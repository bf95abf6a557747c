"""`bridge.upstream.UpstreamConnection`, the bridge's OpenAI socket, against a real websockets server on loopback:
messages reach the callback in order (those that came before it was named included), in the call's context;
what the protocol does not carry is refused with a close and a reason; a peer that stops reading costs bounded
memory, the audio it does not take is dropped."""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from bridge.media_path import WRITE_BUFFER_LIMIT_BYTES
from bridge.upstream import UpstreamConnection

Handler = Callable[[ServerConnection], Awaitable[None]]
call_sid: contextvars.ContextVar[str] = contextvars.ContextVar("call_sid", default="")


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[[Handler], Awaitable[UpstreamConnection]]]:
    servers: list[Any] = []
    clients: list[UpstreamConnection] = []

    async def open_with(handler: Handler) -> UpstreamConnection:
        server = await serve(handler, "127.0.0.1", 0, compression=None)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        client = await connect(f"ws://127.0.0.1:{port}/", create_connection=UpstreamConnection, compression=None,
                               close_timeout=1)
        clients.append(client)
        return client

    yield open_with
    for client in clients:
        client.transport.abort()
    for server in servers:
        server.close()
        await server.wait_closed()


async def send_raw(ws: ServerConnection, frame: Frame) -> None:
    ws.protocol.send_frame(frame)
    ws.send_data()


async def test_messages_reach_the_callback_in_order_including_those_before_it_was_named(upstream) -> None:
    async def handler(ws: ServerConnection) -> None:
        for n in range(5):
            await ws.send(f"early {n}")
        await ws.recv()  # the client's "go"
        for n in range(5):
            await ws.send(f"late {n}")
        await ws.wait_closed()

    ws = await upstream(handler)
    await asyncio.sleep(0.2)  # the early ones arrive before the callback is named
    received: list[tuple[str, str]] = []
    done = asyncio.Event()

    def on_text(text: str) -> None:
        received.append((text, call_sid.get()))
        if text == "late 4":
            done.set()

    call_sid.set("CA123")  # the call's context, as the consumer's reader task has it
    ws.activate(on_text)
    assert ws.send_now("go")
    await asyncio.wait_for(done.wait(), 5)
    assert [text for text, _ in received] == [f"early {n}" for n in range(5)] + [f"late {n}" for n in range(5)]
    assert {sid for _, sid in received} == {"CA123"}  # the callback runs in the context activate was called in


async def test_a_fragmented_message_arrives_whole(upstream) -> None:
    async def handler(ws: ServerConnection) -> None:
        await send_raw(ws, Frame(Opcode.TEXT, b"{\"type\": ", fin=False))
        await send_raw(ws, Frame(Opcode.CONT, b'"x", "delta": "', fin=False))
        await send_raw(ws, Frame(Opcode.CONT, "héllo\"}".encode(), fin=True))
        await ws.wait_closed()

    ws = await upstream(handler)
    received: list[str] = []
    ws.activate(received.append)
    await asyncio.sleep(0.3)
    assert received == ['{"type": "x", "delta": "héllo"}']


@pytest.mark.parametrize(("frames", "code"), [
    ([Frame(Opcode.BINARY, b"\x00\x01")], 1003),
    ([Frame(Opcode.TEXT, b'{"x": "\xc3\x28"}')], 1007),
    ([Frame(Opcode.CONT, b"stray")], 1002),
], ids=["binary", "invalid-utf8", "stray-continuation"])
async def test_what_the_protocol_does_not_carry_is_closed_with_a_code_and_a_reason(
    upstream, frames: list[Frame], code: int
) -> None:
    closes: list[tuple[int, str]] = []

    async def handler(ws: ServerConnection) -> None:
        for frame in frames:
            await send_raw(ws, frame)
        await ws.wait_closed()
        closes.append((ws.close_code, ws.close_reason))

    ws = await upstream(handler)
    received: list[str] = []
    ws.activate(received.append)
    await asyncio.wait_for(ws.wait_closed(), 5)
    await asyncio.sleep(0.1)
    assert received == []
    assert closes and closes[0][0] == code and closes[0][1]
    assert not ws.send_now("after the close")  # a closed socket takes nothing


async def test_a_peer_that_stops_reading_costs_bounded_memory_and_drops_audio(upstream) -> None:
    async def handler(ws: ServerConnection) -> None:
        ws.transport.pause_reading()  # never reads again: the kernel buffers fill, then ours
        await ws.wait_closed()

    ws = await upstream(handler)
    ws.activate(lambda text: None)
    frame = '{"type": "input_audio_buffer.append", "audio": "' + "A" * 216 + '"}'
    sent = dropped = 0
    for _ in range(200_000):  # at most ~54 MB: far past any loopback socket buffer
        if ws.send_now(frame):
            sent += 1
        else:
            dropped += 1
            if dropped > 100:
                break
        if sent % 500 == 0:
            await asyncio.sleep(0)  # let the loop flush to the kernel, as between real frames
    assert dropped > 100, f"{sent} frames all buffered: nothing bounds a stalled upstream"
    assert ws.transport.get_write_buffer_size() <= WRITE_BUFFER_LIMIT_BYTES + 2 * len(frame)


async def test_frames_split_anywhere_and_in_the_handshake_read_arrive_whole_and_in_order() -> None:
    """A server whose bytes arrive cut at arbitrary points: the 101 response and the first frames in one read, a
    frame's header split from its payload, a ping between messages (answered), a fragmented message."""
    texts = [f'{{"type": "response.output_audio.delta", "n": {n}, "delta": "{"A" * (n * 37 % 300)}"}}'
             for n in range(40)]
    pongs: list[bytes] = []

    async def serve_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = ServerProtocol()
        server.receive_data(await reader.readuntil(b"\r\n\r\n"))
        [request] = server.events_received()
        server.send_response(server.accept(request))
        for n, text in enumerate(texts):
            if n == 20:
                server.send_ping(b"keepalive")
            if n == 30:  # one message in three fragments
                data = text.encode()
                server.send_text(data[:10], fin=False)
                server.send_continuation(data[10:20], fin=False)
                server.send_continuation(data[20:], fin=True)
            else:
                server.send_text(text.encode())
        stream = b"".join(server.data_to_send())
        rng = random.Random(7)
        pos = 0
        while pos < len(stream):
            step = rng.choice([1, 2, 3, 7, 50, 129, 400])
            writer.write(stream[pos:pos + step])
            await writer.drain()
            await asyncio.sleep(0)
            pos += step
        server.receive_data(await reader.read(4096))  # the client's pong
        pongs.extend(bytes(event.data) for event in server.events_received()
                     if isinstance(event, Frame) and event.opcode is Opcode.PONG)
        writer.close()

    raw = await asyncio.start_server(serve_raw, "127.0.0.1", 0)
    port = raw.sockets[0].getsockname()[1]
    ws = await connect(f"ws://127.0.0.1:{port}/", create_connection=UpstreamConnection, compression=None,
                       ping_interval=None, close_timeout=1)
    received: list[str] = []
    ws.activate(received.append)
    for _ in range(100):
        if len(received) == len(texts):
            break
        await asyncio.sleep(0.05)
    assert received == texts
    for _ in range(40):
        if pongs:
            break
        await asyncio.sleep(0.05)
    assert pongs == [b"keepalive"]
    ws.transport.abort()
    raw.close()
