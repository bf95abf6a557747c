"""`manage.py loadtest`'s guard rails: a --bridge-pid naming no process stops it before any call; a host
without /proc says the CPU was not measured instead of crashing; the report explains its figures."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from calls.management.commands import loadtest


def gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_bridge_pid_with_no_process_stops_before_any_call():
    with pytest.raises(CommandError, match=r"--bridge-pid \d+: no such process"):
        call_command("loadtest", "--url", "http://127.0.0.1:9", "--calls", "1", "--hold", "1",
                     "--bridge-pid", str(gone_pid()))


def test_no_proc_filesystem_means_not_measured(monkeypatch, tmp_path):
    monkeypatch.setattr(loadtest, "PROC", tmp_path / "no-proc")  # as on macOS
    reader, note = loadtest.bridge_cpu_reader(os.getpid())
    assert reader is None and "not measured" in note and "Linux only" in note


def test_this_process_cpu_is_readable_on_linux():
    if not loadtest.PROC.exists():
        pytest.skip("no /proc on this host")
    reader, note = loadtest.bridge_cpu_reader(os.getpid())
    assert reader is not None and reader() > 0 and note == ""


def test_the_report_explains_its_figures(monkeypatch):
    async def no_calls(*args, **kwargs):
        return ["calls: 1 started, 1 completed, 0 failed in 1.0s"]

    monkeypatch.setattr(loadtest, "run_load", no_calls)
    out = StringIO()
    call_command("loadtest", "--calls", "1", "--hold", "1", stdout=out)
    text = out.getvalue()
    assert "What these figures mean:" in text
    for figure in ("webhook latency", "reply latency", "websocket ping round trip", "caller frames sent",
                   "bridge CPU"):
        assert f"  {figure}:" in text
