"""The bridge's HTTP surface through the real ASGI application: /healthz is liveness for the ALB and ECS
health checks, /readyz readiness (issue 7 item 8), and a bridge process serves nothing else (item 11)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.test import Client

from bridge import health


async def asgi_get(path: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    from voiceops.asgi import application

    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(timeout_s)
    body = b""
    while True:
        message = await communicator.receive_output(timeout_s)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(timeout_s)
    return start["status"], body


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_down(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    health._last_check = (0.0, {})
    yield
    health._last_check = (0.0, {})


@pytest.mark.django_db
def test_a_dependency_failover_fails_readiness_never_liveness(redis_down, django_assert_num_queries) -> None:
    client = Client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["failing"] == ["redis"]
    with django_assert_num_queries(0):  # cheap: no database, no Redis, whatever their state
        alive = client.get("/healthz")
    assert alive.status_code == 200 and alive.json()["status"] == "ok"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/dashboard/", "/", "/twilio/voice", "/static/x.css"])
async def test_a_bridge_process_serves_no_admin_dashboard_or_webhook(settings, path: str) -> None:
    settings.COMPONENT = "bridge"
    status, _ = await asgi_get(path)
    assert status == 404


@pytest.mark.django_db(transaction=True)
async def test_a_bridge_process_still_answers_health_and_readiness(settings) -> None:
    settings.COMPONENT = "bridge"
    health._last_check = (0.0, {})
    assert (await asgi_get("/healthz"))[0] == 200
    assert (await asgi_get("/readyz"))[0] in (200, 503)  # Django's readiness view, not the 404


@pytest.mark.django_db(transaction=True)
async def test_make_run_serves_everything(settings) -> None:
    settings.COMPONENT = "all"
    assert (await asgi_get("/admin/"))[0] == 302  # to the login page
    assert (await asgi_get("/admin/login/"))[0] == 200
