"""The dashboard's live WebSocket: staff receive `call.update` messages; everyone else is refused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, Permission
from django.test import override_settings

from calls import live_feed
from calls.consumers import DashboardConsumer

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

UPDATE = {
    "type": "call.update",
    "call_id": 12,
    "what": "event",
    "call": {
        "id": 12,
        "sid": "CA1",
        "from": "+1415•••0123",
        "to": "+15550001111",
        "config": "Front desk",
        "status": "in_progress",
        "started_at": "2026-01-01T10:00:00+00:00",
        "end_reason": "",
    },
    "event": {"seq": 4, "kind": "caller", "t_ms": 5320, "text": "Hello?", "data": {}},
}


@pytest.fixture
def in_memory_layer():
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        yield


def _create_user(django_user_model: Any, name: str, can_view_calls: bool, **flags: Any) -> Any:
    user = django_user_model.objects.create_user(name, password="pw-123456789", **flags)
    if can_view_calls:
        user.user_permissions.add(Permission.objects.get(codename="view_call"))
    return django_user_model.objects.get(pk=user.pk)  # fresh: no stale permission cache


async def make_user(django_user_model: Any, name: str, can_view_calls: bool = True, **flags: Any) -> Any:
    return await database_sync_to_async(_create_user)(django_user_model, name, can_view_calls, **flags)


def communicator(user: Any, query: str = "", origin: bytes | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", origin)] if origin else []
    comm = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/dashboard/live" + query, headers=headers)
    comm.scope["user"] = user
    return comm


@pytest.mark.django_db(transaction=True)
async def test_staff_receives_updates_for_all_calls(in_memory_layer, django_user_model):
    staff = await make_user(django_user_model, "staff", is_staff=True)
    comm = communicator(staff)
    connected, _ = await comm.connect()
    assert connected
    await get_channel_layer().group_send("voiceops.calls", UPDATE)
    message = await comm.receive_json_from(timeout=2)
    assert message == {k: UPDATE[k] for k in ("call_id", "what", "call", "event")}
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_one_call_subscription_gets_only_that_call(in_memory_layer, django_user_model):
    staff = await make_user(django_user_model, "staff", is_staff=True)
    comm = communicator(staff, "?call=12")
    assert (await comm.connect())[0]
    layer = get_channel_layer()
    await layer.group_send("voiceops.call.13", {**UPDATE, "call_id": 13})
    await layer.group_send("voiceops.call.12", UPDATE)
    message = await comm.receive_json_from(timeout=2)
    assert message["call_id"] == 12
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_browser_messages_are_ignored(in_memory_layer, django_user_model):
    staff = await make_user(django_user_model, "staff", is_staff=True)
    comm = communicator(staff)
    assert (await comm.connect())[0]
    await comm.send_to(text_data="not json at all")
    assert await comm.receive_nothing(timeout=0.2)
    await get_channel_layer().group_send("voiceops.calls", UPDATE)
    assert (await comm.receive_json_from(timeout=2))["what"] == "event"  # still connected and working
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_quiet_feed_sends_heartbeats_until_it_closes(in_memory_layer, django_user_model, settings):
    """A quiet line must not leave the socket idle: a proxy would cut it (tests/scale/test_live_feed_through_proxy
    checks that through HAProxy)."""
    settings.LIVE_FEED_HEARTBEAT_S = 1
    staff = await make_user(django_user_model, "staff", is_staff=True)
    comm = communicator(staff)
    assert (await comm.connect())[0]
    opened = time.monotonic()
    assert await comm.receive_json_from(timeout=2) == live_feed.heartbeat(1) == {"what": "heartbeat", "interval_s": 1}
    first_after_s = time.monotonic() - opened
    await get_channel_layer().group_send("voiceops.calls", UPDATE)
    assert (await comm.receive_json_from(timeout=2))["what"] == "event"  # updates go on between heartbeats
    assert await comm.receive_json_from(timeout=2) == live_feed.heartbeat(1)
    assert 0.8 <= first_after_s <= 1.8
    assert heartbeat_tasks()
    await comm.disconnect()
    await asyncio.sleep(0)
    assert not heartbeat_tasks()  # ended with the socket, not left sending into a closed one


def heartbeat_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if not task.done()
            and task.get_coro().__qualname__ == "DashboardConsumer._send_heartbeats"]


@pytest.mark.django_db(transaction=True)
async def test_non_staff_and_anonymous_are_refused(in_memory_layer, django_user_model):
    customer = await make_user(django_user_model, "customer")
    for user in (customer, AnonymousUser()):
        comm = communicator(user)
        connected, code = await comm.connect()
        assert (connected, code) == (False, 4403)
        await comm.disconnect()  # what the server does after a refused handshake; ends the app instance


@pytest.mark.django_db(transaction=True)
async def test_staff_without_the_view_call_permission_is_refused(in_memory_layer, django_user_model):
    staff = await make_user(django_user_model, "staff", can_view_calls=False, is_staff=True)
    comm = communicator(staff)
    assert await comm.connect() == (False, 4403)
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_other_origins_are_refused(in_memory_layer, django_user_model, settings):
    settings.ALLOWED_HOSTS = ["voiceops.example.com"]
    settings.DEBUG = False
    staff = await make_user(django_user_model, "staff", is_staff=True)
    refused = communicator(staff, origin=b"https://evil.example.net")
    assert await refused.connect() == (False, 4403)
    await refused.disconnect()
    comm = communicator(staff, origin=b"https://voiceops.example.com")
    assert (await comm.connect())[0]
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_bad_call_id_is_refused(in_memory_layer, django_user_model):
    staff = await make_user(django_user_model, "staff", is_staff=True)
    refused = communicator(staff, "?call=12;drop")
    assert await refused.connect() == (False, 4400)
    await refused.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_session_cookie_authenticates_through_auth_middleware(in_memory_layer, django_user_model):
    """The way voiceops.asgi mounts it: AuthMiddlewareStack reads the admin session cookie."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from django.conf import settings
    from django.test import Client
    from django.urls import path

    app = AuthMiddlewareStack(URLRouter([path("dashboard/live", DashboardConsumer.as_asgi())]))

    async def session_cookie(user: Any) -> bytes:
        client = Client()
        await database_sync_to_async(client.force_login)(user)
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()

    staff = await make_user(django_user_model, "staff", is_staff=True)
    comm = WebsocketCommunicator(app, "/dashboard/live", headers=[(b"cookie", await session_cookie(staff))])
    assert (await comm.connect())[0]
    await get_channel_layer().group_send("voiceops.calls", UPDATE)
    assert (await comm.receive_json_from(timeout=2))["call_id"] == 12
    await comm.disconnect()

    customer = await make_user(django_user_model, "customer")
    comm = WebsocketCommunicator(app, "/dashboard/live", headers=[(b"cookie", await session_cookie(customer))])
    assert await comm.connect() == (False, 4403)
    await comm.disconnect()
    anonymous = WebsocketCommunicator(app, "/dashboard/live")
    assert await anonymous.connect() == (False, 4403)
    await anonymous.disconnect()
