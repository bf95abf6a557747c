"""The server comparison's machinery on a tiny load, so that the benchmark behind docs/perf.md keeps working: the
Node load generator, the echo upstream, the bare relay and the shipped `runbridge` pass every frame back, in
order, and every figure of the report is measured."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.playback import MARK_EVERY_MS
from tests.benchmarks.server_compare import table
from tests.servers import ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("node") is None or shutil.which("taskset") is None,
                       reason="the benchmark needs Node (its load generator) and taskset"),
]


def test_relay_and_runbridge_echo_every_frame_with_their_marks(tmp_path: Path) -> None:
    results_path = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.server_compare", "--calls", "3", "--hold", "3", "--ramp", "1",
         "--systems", "relay,runbridge", "--nice", "0", "--json", str(results_path)],
        cwd=ROOT, check=True, timeout=300, capture_output=True,
    )
    results = json.loads(results_path.read_text())["results"]
    assert [r["system"] for r in results] == ["relay", "runbridge"]
    for result in results:
        assert "failed" not in result, result
        assert result["errors"] == [] and result["frames_lost"] == 0 and result["frames_reordered"] == 0
        assert result["frames_unknown"] == 0
        assert result["frames_received"] >= 0.9 * result["frames_sent"] >= 0.9 * 3 * 3 * 50
        if result["system"] == "relay":  # a mark per agent frame (3 calls: one in flight each)
            assert result["marks"] >= result["frames_received"] - 3
        else:  # voiceops: a mark per MARK_EVERY_MS of agent audio, 20 ms a frame
            frames_per_mark = MARK_EVERY_MS // 20
            assert result["frames_received"] // frames_per_mark - 3 <= result["marks"]
            assert result["marks"] <= result["frames_received"] // frames_per_mark + 3
        assert result["cpu_pct_per_call"] > 0 and result["rtt_ms"]["p99"] >= result["rtt_ms"]["p50"] > 0
        assert result["rss_kb"] > 0 and result["setup_ms"]["p50"] > 0
    assert "| runbridge | 3 |" in table(results)
