"""Real servers for end-to-end tests: the bridge (runbridge / daphne) as a subprocess on loopback, sharing
the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_url() -> str:
    """The URL of the database pytest-django created, for a subprocess to share it."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.update(DATABASE_URL=test_database_url(), DJANGO_DEBUG="1", PYTHONUNBUFFERED="1", LOG_LEVEL="INFO")
    env.update(extra)
    return env


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[str], port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/media-stream"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_bridge(tmp_path: Path, port: int | None = None, **env: str) -> Iterator[ServerProcess]:
    """`manage.py runbridge` on loopback (a free port unless given), stopped (SIGTERM, then kill) afterwards.
    `env` overrides the defaults, e.g. the public URLs of a proxy in front of several bridges."""
    port = port or free_port()
    log_path = tmp_path / f"bridge-{port}.log"
    base = f"http://127.0.0.1:{port}"
    full_env = subprocess_env(**{
        "PORT": str(port), "PUBLIC_WEBHOOK_BASE_URL": base, "BRIDGE_PUBLIC_URL": f"ws://127.0.0.1:{port}/media-stream",
        **env,
    })
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runbridge", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT, text=True,
        )
    server = ServerProcess(proc, port, log_path)
    try:
        wait_http(f"{base}/healthz")
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
