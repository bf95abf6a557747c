"""Scale-out fixtures: the fault package's simulator, private Redis and bridge launcher, plus HAProxy (Debian's)
in front of several bridges on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import (  # noqa: F401 - shared fixtures
    agent,
    engine,
    fresh_sim,
    loss_report,
    orm_in_async_tests,
    private_redis,
    sim,
    tls_files,
)
from tests.servers import free_port

HAPROXY_CONFIG = """
global
    stats socket {socket} mode 600 level admin
    maxconn 4000
defaults
    mode http
    timeout connect 2s
{timeouts}
frontend calls
    bind 127.0.0.1:{port}
    default_backend bridges
backend bridges
    # Streams are long-lived and webhooks short: least connections spreads the live calls, round robin would not.
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    timeout check 3s
    default-server inter 250ms fall 2 rise 2
{servers}
"""


# Idle timeouts: `client`/`server` while a request is under way, `tunnel` once a WebSocket is established (when
# unset, the client and server timeouts go on applying to it: an idle socket is cut after them).
DEFAULT_TIMEOUTS = {"client": "60s", "server": "60s", "tunnel": "1h"}


class HAProxy:
    def __init__(self, workdir: Path, backends: dict[str, int], timeouts: dict[str, str | None] | None = None) -> None:
        self.port = free_port()
        self.socket = workdir / "haproxy.sock"
        self.config = workdir / "haproxy.cfg"
        servers = "\n".join(f"    server {name} 127.0.0.1:{port} check" for name, port in backends.items())
        timeouts = DEFAULT_TIMEOUTS if timeouts is None else timeouts
        timeout_lines = "\n".join(f"    timeout {name} {value}" for name, value in timeouts.items() if value)
        self.config.write_text(HAPROXY_CONFIG.format(socket=self.socket, port=self.port, servers=servers,
                                                     timeouts=timeout_lines))
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.proc = subprocess.Popen([binary, "-f", str(self.config), "-db"], stdout=subprocess.DEVNULL,
                                     stderr=(workdir / "haproxy.log").open("wb"))

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def states(self) -> dict[str, str]:
        """Each backend server's health as HAProxy sees it (UP, DOWN, …), from its stats socket."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(self.socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = [line.split(",") for line in data.decode().splitlines() if line and not line.startswith("#")]
        return {row[1]: row[17].split(" ")[0] for row in rows if row[0] == "bridges" and row[1] != "BACKEND"}

    def wait_states(self, expected: dict[str, str], timeout_s: float = 10.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            try:
                states = self.states()
            except OSError:
                states = {}
            if all(states.get(name) == state for name, state in expected.items()):
                return time.monotonic() - started
            time.sleep(0.02)
        raise AssertionError(f"HAProxy did not reach {expected} in {timeout_s}s: {states}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def haproxy_for(tmp_path: Path) -> Iterator[Callable[..., HAProxy]]:
    assert shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists(), (
        "haproxy is not installed (Debian: apt-get install haproxy; .ci/run installs it)")
    started: list[HAProxy] = []

    def start(backends: dict[str, int], timeouts: dict[str, str | None] | None = None) -> HAProxy:
        proxy = HAProxy(tmp_path, backends, timeouts)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
