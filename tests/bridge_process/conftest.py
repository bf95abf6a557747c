"""The bridge process as a real subprocess on loopback (`manage.py runbridge`, or the same command around a
stub WebSocket app), and a fake ECS agent on loopback that records task-protection PUTs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT, free_port


@dataclass
class BridgeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/media-stream"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"bridge still running after {timeout_s}s; log:\n{self.stderr()}") from None

    def wait_log(self, text: str, timeout_s: float = 10.0, stream: str = "stderr") -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            content = self.stderr() if stream == "stderr" else self.stdout()
            if text in content:
                return content
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the bridge's {stream} after {timeout_s}s:\n{self.stderr()}")

    def emf_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout().splitlines() if line.startswith("{")]


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "DJANGO_SETTINGS")) and k not in {"REDIS_URL", "ECS_AGENT_URI"}
    }
    env.update(
        DJANGO_DEBUG="1", PYTHONUNBUFFERED="1", LOG_LEVEL="INFO", DRAIN_TIMEOUT_S="5",
        DATABASE_URL=f"sqlite:///{tmp_path / 'bridge.sqlite3'}",  # /readyz only runs SELECT 1: no migrate needed
    )
    env.update(extra)
    return env


@pytest.fixture
def start_bridge(tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    """start_bridge(*args, stub=False, wait=True, **env) → a running bridge; killed at teardown if still alive."""
    started: list[BridgeProcess] = []

    def start(*args: str, stub: bool = False, wait: bool = True, port: int | None = None,
              **env: str) -> BridgeProcess:
        port = port or free_port()
        entry = ["-m", "tests.bridge_process.stub_bridge"] if stub else ["manage.py", "runbridge"]
        out, err = tmp_path / f"bridge-{port}.out", tmp_path / f"bridge-{port}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, *entry, "--port", str(port), *args],
                cwd=ROOT, env=child_env(tmp_path, **env), stdout=stdout, stderr=stderr,
            )
        bridge = BridgeProcess(proc, port, out, err)
        started.append(bridge)
        if wait:
            wait_ready(bridge)
        return bridge

    yield start
    for bridge in started:
        if bridge.proc.poll() is None:
            bridge.proc.kill()
            bridge.proc.wait()


def wait_ready(bridge: BridgeProcess, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if bridge.proc.poll() is not None:
            raise AssertionError(f"bridge exited with {bridge.proc.returncode}:\n{bridge.stderr()}")
        try:
            if get(f"{bridge.http}/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"bridge did not answer /healthz within {timeout_s}s:\n{bridge.stderr()}")


# --- a fake ECS container agent -------------------------------------------------------------------------
@dataclass
class FakeAgent:
    """Records every request made to it (the bridge must make none: it no longer touches task protection)."""

    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.requests)


@pytest.fixture
def fake_agent() -> Iterator[FakeAgent]:
    agent = FakeAgent()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            with agent.lock:
                agent.requests.append((self.command, self.path))
            data = json.dumps({"error": "not expected"}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    agent.url = f"http://127.0.0.1:{server.server_address[1]}/v1/agent"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield agent
    server.shutdown()
    server.server_close()
