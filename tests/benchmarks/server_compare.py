"""The bridge under each candidate ASGI server, beside a bare relay and (when present) the FastAPI sample, in one run.

    .venv/bin/python -m tests.benchmarks.server_compare --calls 25,50,100 --hold 12 --repeat 2 \\
        [--fastapi-sample DIR --fastapi-python PYTHON] [--write-docs]

Every system runs pinned to one core (`taskset -c --core`, default 0); the load generator and the upstream
simulator share the other core (`--load-core`), all at raised priority (`--nice`). All on 127.0.0.1, bounded by
--calls and --hold.

- Load (tests/benchmarks/node/loadgen.mjs, the same for every system): N simulated Twilio Media Streams calls
  ramped over --ramp seconds, each sending a numbered 20 ms μ-law frame every 20 ms and answering marks.
- Upstream (node/echo_upstream.mjs): an OpenAI Realtime-shaped server that echoes each appended frame back as a
  `response.output_audio.delta`, so every caller frame returns as agent audio: 20 ms frames both ways; the relay
  and the FastAPI sample send a mark per agent frame, voiceops one per `bridge.playback.MARK_EVERY_MS` of it.
- Systems: `relay` (node/relay.mjs, parse + forward, the floor); `fastapi-sample` (the popular FastAPI sample
  bridge, run unchanged from its checkout with its own virtualenv, see fastapi_sample_launch.py); voiceops's
  `voiceops.asgi:application` under daphne, uvicorn (uvloop + httptools, websockets-sansio or the legacy
  websockets protocol), granian and hypercorn, each with its own CLI; and `runbridge`, the shipped command
  (with --baseline DIR, also `runbridge-baseline`: the runbridge of an earlier tree, for before/after figures).
  voiceops runs in production mode (DJANGO_DEBUG=0), each call set up by a signed webhook as Twilio would.

Measured over the steady window (every call up) from /proc: CPU of the system's processes per call, RSS per
call (above the idle process), frame round trip percentiles, frames lost or reordered, call setup time. The
machine is shared, so the report is ratios to the bare relay measured in the same run; --repeat shows the spread.
Results go to --json; --write-docs rewrites the generated part of docs/perf.md and docs/perf.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import ROOT, free_port

NODE_DIR = Path(__file__).resolve().parent / "node"
DOCS = ROOT / "docs" / "perf.md"
PLOT = ROOT / "docs" / "perf.png"
BEGIN, END = "<!-- server_compare:begin -->", "<!-- server_compare:end -->"
TOKEN = "bench-twilio-auth-token"
APP = "voiceops.asgi:application"


@dataclass(frozen=True)
class System:
    name: str
    label: str
    voiceops: bool  # the Django app: calls are set up through the signed webhook
    command: Callable[[int, str, argparse.Namespace], list[str]]


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


SYSTEMS = [
    System("relay", "bare relay (Node, parse + forward)", False,
           lambda port, up, _: ["node", str(NODE_DIR / "relay.mjs"), str(port), up]),
    System("fastapi-sample", "FastAPI sample (uvicorn defaults)", False,
           lambda port, up, a: [a.fastapi_python, str(Path(__file__).with_name("fastapi_sample_launch.py")),
                                a.fastapi_sample, str(port), up]),
    System("daphne", "voiceops under daphne", True,
           lambda port, up, _: _py("-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", APP)),
    System("uvicorn-sansio", "voiceops under uvicorn (uvloop, httptools, websockets-sansio)", True,
           lambda port, up, _: _py("-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port), "--loop",
                                   "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--lifespan", "off",
                                   "--no-access-log", "--log-level", "warning")),
    System("uvicorn-websockets", "voiceops under uvicorn (uvloop, httptools, websockets legacy)", True,
           lambda port, up, _: _py("-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port), "--loop",
                                   "uvloop", "--http", "httptools", "--ws", "websockets", "--lifespan", "off",
                                   "--no-access-log", "--log-level", "warning")),
    System("granian", "voiceops under granian (uvloop, single-threaded runtime)", True,
           lambda port, up, _: _py("-m", "granian", "--interface", "asginl", "--host", "127.0.0.1", "--port",
                                   str(port), "--workers", "1", "--runtime-mode", "st", "--loop", "uvloop",
                                   "--log-level", "warning", APP)),
    System("hypercorn", "voiceops under hypercorn (uvloop)", True,
           lambda port, up, _: _py("-m", "hypercorn", "-k", "uvloop", "-b", f"127.0.0.1:{port}", "-w", "1",
                                   "--log-level", "warning", APP)),
    System("runbridge-baseline", "`manage.py runbridge` of an earlier tree (--baseline)", True,
           lambda port, up, a: _py(str(Path(a.baseline) / "manage.py"), "runbridge", "--host", "127.0.0.1",
                                   "--port", str(port))),
    System("runbridge", "voiceops `manage.py runbridge` (as shipped)", True,
           lambda port, up, _: _py("manage.py", "runbridge", "--host", "127.0.0.1", "--port", str(port))),
]
BY_NAME = {s.name: s for s in SYSTEMS}


def wait_until(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], timeout_s: float = 40) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up in {timeout_s}s")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (granian and hypercorn serve from child processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


@contextmanager
def started(argv: list[str], env: dict[str, str], args: argparse.Namespace, core: int,
            log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` in a session of its own, pinned to `core` at raised priority; stopped (SIGTERM, then SIGKILL)."""
    with log.open("ab") as out:
        proc = subprocess.Popen([*pinned(args, core), *argv], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    raise_priority(proc.pid, args.nice)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


def pinned(args: argparse.Namespace, core: int) -> list[str]:
    """Run on `core` only, at `--nice` priority (nice and taskset exec the command: the pid is the server's)."""
    return ["nice", "-n", str(args.nice), "taskset", "-c", str(core)]


def raise_priority(pid: int, nice: int) -> None:
    """With autogroup scheduling (Linux's default on desktops and here), a process's nice value only counts
    within its session's group; each session gets a fair share of a core against every other session on the
    machine. Give the benchmark's own sessions (each process it starts has one) the same raised priority as
    their processes (root only)."""
    if nice == 0:
        return
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def voiceops_env(tmp: Path, port: int, upstream: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}"),
        DJANGO_DEBUG="0", DJANGO_SECRET_KEY="bench-" + "k9Qz" * 14, DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_SUPERUSER_PASSWORD="bench-admin-password",
        OPENAI_API_KEY="sk-bench", OPENAI_REALTIME_URL=upstream, TWILIO_AUTH_TOKEN=TOKEN,
        PUBLIC_WEBHOOK_BASE_URL=f"http://127.0.0.1:{port}", BRIDGE_PUBLIC_URL=f"ws://127.0.0.1:{port}/media-stream",
        LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="voiceops.settings",
    )
    return env


def voiceops_calls(port: int, count: int) -> list[dict[str, Any]]:
    """Set `count` calls up as Twilio does: a signed webhook each; the TwiML names the stream and its token."""
    from calls.simulators.twilio_caller import (
        compute_signature,
        inbound_call_params,
        parse_twiml,
        signed_webhook_post,
    )

    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/media-stream"
    handshake = {"X-Twilio-Signature": compute_signature(ws_url, {}, TOKEN)}
    calls = []
    for _ in range(count):
        params = inbound_call_params(to="+15005550006", from_="+15005550001")
        status, body = signed_webhook_post(base, "/twilio/voice", params, TOKEN)
        twiml = parse_twiml(body)
        if status != 200 or twiml.kind != "stream" or not twiml.stream_url:
            raise RuntimeError(f"webhook answered {status}: {body[:200]}")
        calls.append({"url": twiml.stream_url, "headers": handshake, "parameters": twiml.parameters,
                      "callSid": params["CallSid"], "accountSid": params["AccountSid"]})
    return calls


def plain_calls(port: int, count: int) -> list[dict[str, Any]]:
    return [{"url": f"ws://127.0.0.1:{port}/media-stream", "callSid": f"CA{i:032x}", "accountSid": "AC" + "0" * 32}
            for i in range(count)]


def measure(system: System, calls: int, args: argparse.Namespace, tmp: Path, upstream: str) -> dict[str, Any]:
    port = free_port()
    env = voiceops_env(tmp, port, upstream) if system.voiceops else {
        **os.environ, "OPENAI_API_KEY": "sk-bench", "PYTHONUNBUFFERED": "1"}
    log = tmp / f"{system.name}.log"
    with started(system.command(port, upstream, args), env, args, args.core, log) as proc:
        if system.voiceops:
            wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), system.name, proc)
        else:
            wait_until(lambda: tcp_open(port), system.name, proc)
        time.sleep(1.0)  # let start-up work settle before the idle RSS reading
        specs = voiceops_calls(port, calls) if system.voiceops else plain_calls(port, calls)
        config = {"calls": specs, "rampS": args.ramp, "holdS": args.hold, "graceS": 1.0,
                  "pids": process_tree(proc.pid), "core": args.core}  # taskset execs the server: same pid
        config_path = tmp / "loadgen.json"
        config_path.write_text(json.dumps(config))
        loadgen = subprocess.Popen([*pinned(args, args.load_core), "node", str(NODE_DIR / "loadgen.mjs"),
                                    str(config_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        raise_priority(loadgen.pid, args.nice)
        try:
            stdout, stderr = loadgen.communicate(timeout=args.ramp + args.hold + 60)
        finally:
            if loadgen.poll() is None:
                loadgen.kill()
                loadgen.wait()
        if loadgen.returncode != 0:
            raise RuntimeError(f"loadgen failed: {stderr[-2000:]}")
        result = json.loads(stdout)
    result.update(system=system.name, label=system.label)
    return result


def ensure_node_modules() -> None:
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    ensure_node_modules()
    tmp = Path(tempfile.mkdtemp(prefix="voiceops-compare-"))
    systems = [BY_NAME[name] for name in args.systems.split(",")]
    if not (args.fastapi_sample and args.fastapi_python):
        systems = [s for s in systems if s.name != "fastapi-sample"]
    if not args.baseline:
        systems = [s for s in systems if s.name != "runbridge-baseline"]
    counts = [int(c) for c in args.calls.split(",")]
    if any(not 1 <= c <= 300 for c in counts) or not 1 <= args.hold <= 120:
        raise SystemExit("--calls must be 1-300 each and --hold 1-120 s")
    sim_port = free_port()
    upstream = f"ws://127.0.0.1:{sim_port}/v1/realtime"
    manage_env = voiceops_env(tmp, 8000, upstream)
    subprocess.run(_py("manage.py", "migrate", "-v0"), cwd=ROOT, env=manage_env, check=True)
    subprocess.run(_py("manage.py", "seed_demo"), cwd=ROOT, env=manage_env, check=True, stdout=subprocess.DEVNULL)
    results: list[dict[str, Any]] = []
    with started(["node", str(NODE_DIR / "echo_upstream.mjs"), str(sim_port)], dict(os.environ), args,
                 args.load_core, tmp / "upstream.log") as sim:
        wait_until(lambda: tcp_open(sim_port), "upstream simulator", sim)
        for repeat in range(args.repeat):
            for calls in counts:
                for system in systems:  # every system at this call count, back to back: same machine weather
                    try:
                        result = measure(system, calls, args, tmp, upstream)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        result = {"system": system.name, "label": system.label, "calls": calls, "failed": str(exc)}
                    result["repeat"] = repeat
                    results.append(result)
                    print(summary_line(result), flush=True)
    if not args.keep_logs:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"logs in {tmp}")
    return results


def summary_line(r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"{r['system']:<20} {r['calls']:>4} calls  FAILED: {r['failed']}"
    return (f"{r['system']:<20} {r['calls']:>4} calls  cpu {r['cpu_pct_per_call']:.2f} %/call "
            f"({r['cpu_core_share'] * 100:.0f} % of the core)  rtt p50 {r['rtt_ms']['p50']:.1f} p99 "
            f"{r['rtt_ms']['p99']:.1f} ms  rss {r['rss_per_call_kb']:.0f} KB/call  lost {r['frames_lost']} "
            f"reordered {r['frames_reordered']}  setup p50 {r['setup_ms']['p50']:.0f} ms  "
            f"errors {len(r['errors'])}  loadgen late p99 {r['send_late_ms_p99']:.1f} ms  "
            f"other work on the core {r['other_work_on_core'] * 100:.0f} %")


# --- the report ---------------------------------------------------------------------------------------------
def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "n/a"
    low, high = min(values), max(values)
    mid = statistics.median(values)
    return fmt.format(mid) if len(values) == 1 or fmt.format(low) == fmt.format(high) else (
        f"{fmt.format(mid)} ({fmt.format(low)} to {fmt.format(high)})")


def table(results: list[dict[str, Any]]) -> str:
    """One row per system and call count: medians over the repeats, (min to max) when they differ; ratios are to
    the bare relay's figure at the same call count in the same repeat."""
    ok = [r for r in results if "failed" not in r]
    relay = {(r["repeat"], r["calls"]): r for r in ok if r["system"] == "relay"}
    lines = [
        "| system | calls | core % per call | x relay | calls/core | p99 RTT ms | x relay | p50 RTT ms "
        "| RSS KB/call | lost | reordered | setup p50 ms | errors | other work on the core % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {s.name: i for i, s in enumerate(SYSTEMS)}
    keys = sorted({(r["calls"], r["system"]) for r in results}, key=lambda k: (k[0], order.get(k[1], 99)))
    for calls, name in keys:
        runs = [r for r in ok if r["system"] == name and r["calls"] == calls]
        failed = [r for r in results if r["system"] == name and r["calls"] == calls and "failed" in r]
        if not runs:
            lines.append(f"| {name} | {calls} | failed: {failed[0]['failed'][:80]} |" + " |" * 11)
            continue
        base = [relay.get((r["repeat"], calls)) for r in runs]
        cpu_ratio = [r["cpu_pct_per_call"] / b["cpu_pct_per_call"] for r, b in zip(runs, base, strict=True) if b]
        p99_ratio = [r["rtt_ms"]["p99"] / b["rtt_ms"]["p99"] for r, b in zip(runs, base, strict=True) if b]
        lines.append(" | ".join([
            f"| {name}", str(calls),
            _spread([r["cpu_pct_per_call"] for r in runs], "{:.2f}"),
            _spread(cpu_ratio, "{:.2f}"),
            _spread([100 / r["cpu_pct_per_call"] for r in runs], "{:.0f}"),
            _spread([r["rtt_ms"]["p99"] for r in runs], "{:.1f}"),
            _spread(p99_ratio, "{:.2f}"),
            _spread([r["rtt_ms"]["p50"] for r in runs], "{:.1f}"),
            _spread([r["rss_per_call_kb"] for r in runs], "{:.0f}"),
            str(sum(r["frames_lost"] for r in runs)),
            str(sum(r["frames_reordered"] for r in runs)),
            _spread([r["setup_ms"]["p50"] for r in runs], "{:.0f}"),
            str(sum(len(r["errors"]) for r in runs) + len(failed)),
            _spread([r["other_work_on_core"] * 100 for r in runs], "{:.0f}") + " |",
        ]))
    return "\n".join(lines)


# Fargate task sizes: (vCPU, memory MiB). The bridge is one process on one event loop: it uses one core at most.
FARGATE_TASKS = [(0.25, 512), (1.0, 2048)]
CPU_HEADROOM = 0.7  # fill a task's vCPU to 70 %: call set-up, GC, tool calls and bursts take the rest
MEMORY_HEADROOM = 0.8


def sizing(results: list[dict[str, Any]], system: str = "runbridge") -> list[str]:
    """What one task holds: the most expensive per-call CPU and RSS measured for `system` at any call count
    (conservative), with the idle process's RSS, against each task size with headroom."""
    runs = [r for r in results if r["system"] == system and "failed" not in r]
    if not runs:
        return [f"(no {system} results: no sizing)"]
    cpu_per_call = max(r["cpu_pct_per_call"] for r in runs) / 100  # fraction of one core
    rss_per_call = max(max(r["rss_per_call_kb"], 0) for r in runs) / 1024  # MiB
    idle_rss = max(r["rss_idle_kb"] for r in runs) / 1024
    lines = [f"Per call, worst measured for `{system}`: {cpu_per_call * 100:.2f} % of a core, "
             f"{rss_per_call * 1024:.0f} KB RSS; idle process {idle_rss:.0f} MiB.", "",
             "| Fargate task | calls by CPU (70 % of the vCPU) | calls by memory (80 %) | holds |",
             "|---|---:|---:|---:|"]
    for vcpu, memory in FARGATE_TASKS:
        by_cpu = int(min(vcpu, 1.0) * CPU_HEADROOM / cpu_per_call)
        by_memory = int((memory * MEMORY_HEADROOM - idle_rss) / rss_per_call) if rss_per_call > 0 else 10**6
        lines.append(f"| {vcpu:g} vCPU / {memory / 1024:g} GB | {by_cpu} | {by_memory} | {min(by_cpu, by_memory)} |")
    return lines


def _medians(runs: list[dict[str, Any]], figure: Callable[[dict[str, Any]], float]) -> tuple[list[int], list[float]]:
    """Call counts, and the median of `figure` over the repeats at each."""
    counts = sorted({r["calls"] for r in runs})
    return counts, [statistics.median(figure(r) for r in runs if r["calls"] == c) for c in counts]


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "failed" not in r]
    fig, (cpu_ax, p50_ax, p99_ax) = plt.subplots(1, 3, figsize=(15, 4.5))
    for system in SYSTEMS:
        runs = [r for r in ok if r["system"] == system.name]
        if not runs:
            continue
        cpu_ax.plot(*_medians(runs, lambda r: r["cpu_core_share"] * 100), marker="o", label=system.name)
        p50_ax.plot(*_medians(runs, lambda r: r["rtt_ms"]["p50"]), marker="o", label=system.name)
        p99_ax.plot(*_medians(runs, lambda r: r["rtt_ms"]["p99"]), marker="o", label=system.name)
    cpu_ax.set(title="CPU (median of repeats)", xlabel="concurrent calls", ylabel="% of one core")
    p50_ax.set(title="p50 frame round trip", xlabel="concurrent calls", ylabel="ms", yscale="log")
    p99_ax.set(title="p99 frame round trip", xlabel="concurrent calls", ylabel="ms", yscale="log")
    for ax in (cpu_ax, p50_ax, p99_ax):
        ax.grid(alpha=0.3)
    cpu_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_docs(results: list[dict[str, Any]], command: str) -> None:
    generated = "\n".join([
        BEGIN,
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"({os.cpu_count()} cores, shared).",
        "",
        table(results),
        "",
        "![CPU, p50 and p99 frame round trip against concurrent calls](perf.png)",
        "",
        *sizing(results),
        END,
    ])
    text = DOCS.read_text() if DOCS.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOCS.write_text(head + generated + tail)
    plot(results, PLOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="25,50,100", help="comma-separated concurrent call counts")
    parser.add_argument("--hold", type=float, default=12.0, help="seconds of steady load after the ramp")
    parser.add_argument("--ramp", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--systems", default=",".join(s.name for s in SYSTEMS))
    parser.add_argument("--core", type=int, default=0, help="the core the system under test is pinned to")
    parser.add_argument("--load-core", type=int, default=1, help="the core of the load generator and upstream")
    parser.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0,
                        help="scheduling priority of everything the benchmark starts (a shared machine's other "
                             "work then interferes less; default -10 as root)")
    parser.add_argument("--fastapi-sample", help="a checkout of the FastAPI sample (its main.py)")
    parser.add_argument("--fastapi-python", help="the sample's own virtualenv python (its requirements.txt)")
    parser.add_argument("--baseline", help="an earlier tree of this repository (e.g. `git archive REF | tar -x -C "
                                           "DIR`): its runbridge runs as `runbridge-baseline`, before/after in one run")
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument("--from-json", type=Path, help="no run: report the results of an earlier --json")
    parser.add_argument("--write-docs", action="store_true", help="rewrite docs/perf.md's table and docs/perf.png")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    if args.from_json:  # the report of an earlier run, under the command that ran it
        saved = json.loads(args.from_json.read_text())
        command, results = saved["command"], saved["results"]
    else:
        command = "python -m tests.benchmarks.server_compare " + " ".join(sys.argv[1:])
        results = run(args)
        if args.json:
            args.json.write_text(json.dumps({"command": command, "results": results}, indent=1))
    print(table(results))
    if args.write_docs:
        write_docs(results, command)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceops.settings")
    main()
