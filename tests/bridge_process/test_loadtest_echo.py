"""`manage.py loadtest --echo-upstream` against a real `runbridge` on loopback: every figure the report promises
(per-direction latency, frames lost and reordered, set-up time, CPU per call-minute, RSS per call) is there, and
on an idle loopback no frame is lost or reordered."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bridge_process.conftest import BridgeProcess, child_env
from tests.servers import ROOT, free_port

pytestmark = pytest.mark.e2e
TOKEN = "loadtest-twilio-token"


def test_echo_load_times_each_direction_and_loses_nothing(start_bridge: object, tmp_path: Path) -> None:
    port, upstream_port = free_port(), free_port()
    env = {
        "OPENAI_API_KEY": "sk-loadtest", "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{upstream_port}/v1/realtime",
        "TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_WEBHOOK_BASE_URL": f"http://127.0.0.1:{port}",
        "BRIDGE_PUBLIC_URL": f"ws://127.0.0.1:{port}/media-stream",
    }
    manage_env = child_env(tmp_path, **env)
    for command in (["migrate", "-v0"], ["seed_demo"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=manage_env, check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
    bridge: BridgeProcess = start_bridge("--host", "127.0.0.1", port=port, **env)  # type: ignore[operator]

    out = subprocess.run(
        [sys.executable, "manage.py", "loadtest", "--url", bridge.http, "--calls", "3", "--hold", "3", "--ramp", "1",
         "--bridge-pid", str(bridge.proc.pid), "--echo-upstream", str(upstream_port)],
        cwd=ROOT, env=manage_env, capture_output=True, text=True, timeout=120,
    )
    report = out.stdout
    assert out.returncode == 0, out.stderr
    assert "calls: 3 started, 3 completed, 0 failed" in report, report
    for direction in ("caller → upstream", "upstream → caller"):
        assert re.search(rf"{direction} added latency: p50 \d+ ms  p95 \d+ ms  p99 \d+ ms", report), report
    assert re.search(r"call set-up \(webhook → first frame back\): p50 \d+ ms", report), report
    frames = re.search(r"frames: (\d+) sent, (\d+) after set-up; lost caller → upstream (\d+), upstream → caller "
                       r"(\d+); reordered (\d+) and (\d+)", report)
    assert frames, report
    sent, counted, *lost_and_reordered = map(int, frames.groups())
    assert sent >= 3 * 3 * 50 and counted >= 3 * 2 * 50  # 50 frames a second, most of them after set-up
    assert lost_and_reordered == [0, 0, 0, 0]
    assert re.search(r"bridge: [\d.]+% of one core = [\d.]+ CPU s per call-minute .* -?\d+ KB per call", report), report
    assert "Traceback" not in bridge.stderr()
