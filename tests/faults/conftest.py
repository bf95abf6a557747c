"""Fault-injection fixtures: the real bridge process (`manage.py runbridge`) on loopback with the Twilio caller and
OpenAI Realtime simulators, plus PRIVATE PostgreSQL and Redis servers the tests start and stop themselves (never the
shared ones). Every fault test fills a loss report (what was lost: the expectation is nothing), printed and, when
VOICEOPS_FAULTS_REPORT names a file, appended to it as one JSON line (tests/benchmarks/faults.py collects them)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from calls.simulators.realtime_server import Faults, Pacing, RealtimeSimulator, Script
from tests.bridge_tools.conftest import TlsFiles, tls_files  # noqa: F401 - shared fixture
from tests.e2e.conftest import agent, bridge_env, orm_in_async_tests  # noqa: F401 - shared fixtures
from tests.servers import ServerProcess, free_port, run_bridge

# Bigger versions for the published run (tests/benchmarks/faults.py sets these).
DRAIN_CALLS = int(os.environ.get("VOICEOPS_FAULT_CALLS", "10"))
SCALE_CALLS = int(os.environ.get("VOICEOPS_SCALE_CALLS", "6"))

# Real-time agent audio with a byte counter pattern: any lost, duplicated or reordered byte shows.
REALTIME_COUNTER = Pacing(chunk_ms=100, speed=1.0, first_audio_delay_ms=50, pattern="counter")


@pytest.fixture(scope="module")
def engine() -> str:
    """The engine the shared `agent` fixture configures: these tests drive the OpenAI Realtime simulator."""
    return "realtime"


@pytest.fixture(scope="module")
def sim() -> Iterator[RealtimeSimulator]:
    simulator = RealtimeSimulator(pacing=REALTIME_COUNTER)
    simulator.start_in_thread()
    yield simulator
    simulator.stop()


@pytest.fixture
def fresh_sim(sim: RealtimeSimulator) -> RealtimeSimulator:
    sim.script, sim.faults, sim.pacing = Script(), Faults(), REALTIME_COUNTER
    return sim


@pytest.fixture
def loss_report(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    report: dict[str, Any] = {"test": request.node.name}
    started = time.monotonic()
    yield report
    report["test_seconds"] = round(time.monotonic() - started, 1)
    line = json.dumps(report, sort_keys=True)
    print(f"\nloss report: {line}")
    if path := os.environ.get("VOICEOPS_FAULTS_REPORT"):
        with open(path, "a") as out:
            out.write(line + "\n")


# --- the bridge process ------------------------------------------------------------------------------------
@contextmanager
def bridge_process(tmp_path: Path, *, port: int | None = None, public_base: str | None = None,
                   **env: str) -> Iterator[ServerProcess]:
    """`manage.py runbridge` on loopback whose Django accepts this test process's staff sessions. `public_base` is
    the URL Twilio is told to use (a proxy in front of several bridges); by default the bridge's own."""
    extra = {"DJANGO_SECRET_KEY": settings.SECRET_KEY}
    if public_base:
        extra.update(PUBLIC_WEBHOOK_BASE_URL=public_base,
                     BRIDGE_PUBLIC_URL=public_base.replace("http", "ws", 1) + "/media-stream")
    with run_bridge(tmp_path, port=port, **{**extra, **env}) as server:
        yield server


def http_status(url: str, timeout_s: float = 3.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def health(server: ServerProcess) -> dict[str, Any]:
    with urllib.request.urlopen(server.http + "/healthz", timeout=3) as response:
        return json.loads(response.read())


# --- a private Redis -----------------------------------------------------------------------------------------
class PrivateRedis:
    """redis-server on a free loopback port, no persistence; stop() and start() again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed (Debian: redis-server; .ci/run starts one)"
        self.proc = subprocess.Popen(
            [server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            time.sleep(0.05)
        raise TimeoutError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


# --- a private PostgreSQL cluster ----------------------------------------------------------------------------
def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    assert found, "Debian's PostgreSQL server binaries are not installed (/usr/lib/postgresql/*/bin)"
    return Path(found[-1]).parent


class PrivatePostgres:
    """A throwaway cluster (initdb + pg_ctl) on a free loopback port in a temp dir. initdb refuses root, so as
    root the server runs as the `postgres` user that Debian's package creates."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="voiceops-pg-"))
        self.data = self.root / "data"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, "postgres")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/voiceops"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([*self.as_user, *args], check=True, timeout=timeout, cwd=self.root,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.start()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "voiceops")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                   "-c full_page_writes=off -c synchronous_commit=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"), "-o", options,
                  "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """fast: every client connection is cut, as when the database host goes away."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.destroy()


def stream_ended_twiml(params: dict[str, str]) -> Any:
    """What Twilio's Connect action gets once the stream closed, asked of the webhook in this process (a bridge
    that drained has exited): the polite ending the caller hears."""
    from django.test import Client, override_settings

    from calls.simulators.twilio_caller import compute_signature, parse_twiml
    from tests.conftest import TWILIO_TOKEN

    base = "https://hooks.example.com"
    data = {**params, "CallStatus": "in-progress"}
    with override_settings(TWILIO_AUTH_TOKEN=TWILIO_TOKEN, PUBLIC_WEBHOOK_BASE_URL=base):
        response = Client().post("/twilio/stream-ended", data, HTTP_X_TWILIO_SIGNATURE=compute_signature(
            f"{base}/twilio/stream-ended", data, TWILIO_TOKEN))
    assert response.status_code == 200
    return parse_twiml(response.content.decode())


@pytest.fixture(scope="module")
def bridge(sim: RealtimeSimulator, tls_files: TlsFiles, django_db_setup: Any, django_db_blocker: Any,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One bridge process for a module's tests (the e2e fixture's twin, on this package's simulator)."""
    assert sim.url is not None
    with django_db_blocker.unblock(), bridge_process(tmp_path_factory.mktemp("bridge"),
                                                     **bridge_env(sim, tls_files)) as server:
        yield server
