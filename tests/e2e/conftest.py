"""End-to-end fixtures: an OpenAI simulator on loopback, and the real bridge (`manage.py runbridge`, daphne) as a
subprocess sharing the test database, with Twilio played by the caller simulator.

Every test runs once per engine (`engine`: "realtime" against the Realtime simulator, "live" against the GPT-Live
one); a test of a feature one engine alone has narrows it with `only_realtime`."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from calls import services
from calls.models import AgentConfig
from calls.simulators.live_server import LiveSimulator
from calls.simulators.realtime_server import Pacing, RealtimeSimulator, Script
from tests.bridge_tools.conftest import TlsFiles, tls_files, tool_server  # noqa: F401 - shared fixtures
from tests.conftest import TWILIO_TOKEN
from tests.servers import ServerProcess, run_bridge

ENGINES = ("realtime", "live")
MODELS = {"realtime": "gpt-realtime-2.1", "live": "gpt-live-1.1"}
URL_SETTINGS = {"realtime": "OPENAI_REALTIME_URL", "live": "OPENAI_LIVE_URL"}
only_realtime = pytest.mark.parametrize("engine", ["realtime"], indirect=True)


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def sim(engine: str) -> Iterator[RealtimeSimulator]:
    simulator_class = LiveSimulator if engine == "live" else RealtimeSimulator
    simulator = simulator_class(pacing=Pacing(chunk_ms=100, speed=4.0, first_audio_delay_ms=50))
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


def bridge_env(sim: RealtimeSimulator, tls: TlsFiles, **extra: str) -> dict[str, str]:
    """The bridge's environment, its OpenAI URL pointing at `sim` (Realtime or GPT-Live)."""
    return {
        URL_SETTINGS["live" if isinstance(sim, LiveSimulator) else "realtime"]: sim.url,
        "OPENAI_API_KEY": "sk-simulated", "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "DRAIN_TIMEOUT_S": "20", "TOOL_CA_BUNDLE": str(tls.ca_bundle),
        "TOOL_ALLOWED_PRIVATE_HOSTS": "127.0.0.1,localhost", "TOOL_SECRET_LOOKUP_ORDER": "tool-secret-123",
        **extra,
    }


@pytest.fixture(scope="module")
def bridge(sim: RealtimeSimulator, tls_files: TlsFiles, django_db_setup, django_db_blocker,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    assert sim.url is not None
    with django_db_blocker.unblock(), run_bridge(tmp_path_factory.mktemp("bridge"),
                                                 **bridge_env(sim, tls_files)) as server:
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
def agent(transactional_db, engine: str, request: pytest.FixtureRequest) -> Iterator[AgentConfig]:
    config = AgentConfig.objects.create(
        name="Front desk", instructions="You answer the phone.", greeting="Hello, how can I help?",
        is_default=True, transfer_number="+14155550199", engine=engine, model=MODELS[engine],
    )
    config.tools.set(services.ensure_builtin_tools())
    yield config
    if "bridge" in request.fixturenames:  # torn down before transactional_db flushes the tables
        wait_until_idle(request.getfixturevalue("bridge"))


@pytest.fixture(autouse=True)
def orm_in_async_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The async tests read the test database between steps (the servers run elsewhere): allow the ORM there."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
