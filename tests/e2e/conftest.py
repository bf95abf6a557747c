"""End-to-end fixtures: the OpenAI Realtime simulator on loopback, and the real bridge (`manage.py runbridge`,
daphne) as a subprocess sharing the test database, with Twilio played by the caller simulator."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from calls import services
from calls.models import AgentConfig
from calls.simulators.realtime_server import Pacing, RealtimeSimulator, Script
from tests.bridge_tools.conftest import TlsFiles, tls_files, tool_server  # noqa: F401 - shared fixtures
from tests.conftest import TWILIO_TOKEN
from tests.servers import ServerProcess, run_bridge


@pytest.fixture(scope="module")
def sim() -> Iterator[RealtimeSimulator]:
    simulator = RealtimeSimulator(pacing=Pacing(chunk_ms=100, speed=4.0, first_audio_delay_ms=50))
    simulator.start_in_thread()
    yield simulator
    simulator.stop()


@pytest.fixture
def fresh_sim(sim: RealtimeSimulator) -> RealtimeSimulator:
    """The module's simulator, reset to a default script and no faults for this test."""
    from calls.simulators.realtime_server import Faults

    sim.script = Script()
    sim.faults = Faults()
    sim.pacing = Pacing(chunk_ms=100, speed=4.0, first_audio_delay_ms=50)
    return sim


def bridge_env(sim_url: str, tls: TlsFiles, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_REALTIME_URL": sim_url, "OPENAI_API_KEY": "sk-simulated", "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "DRAIN_TIMEOUT_S": "20", "TOOL_CA_BUNDLE": str(tls.ca_bundle),
        "TOOL_ALLOWED_PRIVATE_HOSTS": "127.0.0.1,localhost", "TOOL_SECRET_LOOKUP_ORDER": "tool-secret-123",
        **extra,
    }


@pytest.fixture(scope="module")
def bridge(sim: RealtimeSimulator, tls_files: TlsFiles, django_db_setup, django_db_blocker,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    assert sim.url is not None
    with django_db_blocker.unblock(), run_bridge(tmp_path_factory.mktemp("bridge"),
                                                 **bridge_env(sim.url, tls_files)) as server:
        yield server


def wait_until_idle(server: ServerProcess, timeout_s: float = 10.0) -> None:
    """No live call and no unwritten event: only then may the test database be flushed under the bridge
    (a TRUNCATE racing the bridge's inserts can deadlock)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(server.http + "/healthz", timeout=2) as response:
                health = json.loads(response.read())
            if health["active_calls"] == 0 and health["pending_events"] == 0:
                return
        time.sleep(0.05)


@pytest.fixture
def agent(transactional_db, request: pytest.FixtureRequest) -> Iterator[AgentConfig]:
    config = AgentConfig.objects.create(
        name="Front desk", instructions="You answer the phone.", greeting="Hello, how can I help?",
        is_default=True, transfer_number="+14155550199",
    )
    config.tools.set(services.ensure_builtin_tools())
    yield config
    if "bridge" in request.fixturenames:  # torn down before transactional_db flushes the tables
        wait_until_idle(request.getfixturevalue("bridge"))


@pytest.fixture(autouse=True)
def orm_in_async_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The async tests read the test database between steps (the servers run elsewhere): allow the ORM there."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
