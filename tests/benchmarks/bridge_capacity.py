"""Bridge capacity benchmark: how many concurrent calls one bridge process (one core) holds.

    .venv/bin/python -m tests.benchmarks.bridge_capacity --calls 100 --hold 20

Starts, all on 127.0.0.1: the OpenAI Realtime simulator (agent audio in real time, 20 ms deltas: the worst
case, 50 agent frames/s per call plus a mark each), `manage.py runbridge` on a throwaway SQLite database,
then `manage.py loadtest` with N callers sending 50 frames/s each. Prints the loadtest report, including the
bridge's CPU per call-second and the implied calls per core. The load generators share this 2-core machine
with the bridge; the figure is the bridge's own CPU time, so it holds while the frame rates reported are
close to 100%.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-twilio-token"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--hold", type=float, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voiceops-bench-"))
    sim_port, bridge_port = free_port(), free_port()
    # Production mode (DEBUG off), as the bridge runs on ECS.
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}", "DJANGO_DEBUG": "0",
           "DJANGO_SECRET_KEY": "bench-" + "k9Qz" * 14, "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
           "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_SUPERUSER_PASSWORD": "bench-admin-password",
           "OPENAI_API_KEY": "sk-bench", "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{sim_port}/v1/realtime",
           "TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_WEBHOOK_BASE_URL": f"http://127.0.0.1:{bridge_port}",
           "BRIDGE_PUBLIC_URL": f"ws://127.0.0.1:{bridge_port}/media-stream", "LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([*manage, "seed_demo"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    reply = "This is a long answer that keeps the agent talking for the whole benchmark. " * 8
    sim_cmd = [sys.executable, "-m", "calls.simulators.realtime_server", "--port", str(sim_port), "--no-record",
               "--chunk-ms", "20", "--reply", reply]
    sim = subprocess.Popen(sim_cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bridge = subprocess.Popen([*manage, "runbridge", "--host", "127.0.0.1", "--port", str(bridge_port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "bridge.log").open("w"))
    try:
        wait_http(f"http://127.0.0.1:{bridge_port}/healthz")
        time.sleep(1)
        subprocess.run([*manage, "loadtest", "--url", f"http://127.0.0.1:{bridge_port}", "--calls",
                        str(args.calls), "--hold", str(args.hold), "--ramp", str(min(10.0, args.hold / 3)),
                        "--bridge-pid", str(bridge.pid)], cwd=ROOT, env=env, check=True)
    finally:
        for proc in (bridge, sim):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
