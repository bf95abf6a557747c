"""Fault and scale-out figures for docs/reliability.md: the tests in tests/faults and tests/scale, run at the
published sizes, each filling a loss report (what was lost), collected into the document's results table.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/<yours> REDIS_URL=redis://127.0.0.1:6379/<n>
    .venv/bin/python -m tests.benchmarks.faults --calls 50 --scale-calls 20 --write docs/reliability.md

Everything runs on loopback: the real bridge (`manage.py runbridge`) as subprocesses, the Twilio caller and
OpenAI Realtime simulators, a private PostgreSQL cluster and private redis-servers, HAProxy. Without --write
the table is printed. The suite runs the same tests at smaller sizes (10 drained calls, 6 scale-out calls).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"


def run(calls: int, scale_calls: int, selection: list[str]) -> tuple[int, list[dict[str, object]]]:
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as report:
        env = dict(os.environ, VOICEOPS_FAULT_CALLS=str(calls), VOICEOPS_SCALE_CALLS=str(scale_calls),
                   VOICEOPS_FAULTS_REPORT=report.name)
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
                               cwd=ROOT, env=env)
        return code, [json.loads(line) for line in Path(report.name).read_text().splitlines() if line]


def table(reports: list[dict[str, object]]) -> str:
    lines = ["| test | figures (what was lost, how long things took) |", "|---|---|"]
    for report in reports:
        figures = ", ".join(f"{k}={json.dumps(v)}" for k, v in report.items() if k != "test")
        lines.append(f"| `{report['test']}` | {figures} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50, help="live calls when SIGTERM arrives")
    parser.add_argument("--scale-calls", type=int, default=20, help="calls spread over the two bridges")
    parser.add_argument("--write", type=Path, help="replace the results table in this Markdown file")
    parser.add_argument("tests", nargs="*", default=["tests/faults", "tests/scale"])
    args = parser.parse_args()
    code, reports = run(args.calls, args.scale_calls, args.tests)
    result = (f"{BEGIN}\n`.venv/bin/python -m tests.benchmarks.faults --calls {args.calls} "
              f"--scale-calls {args.scale_calls}` (pytest exit {code}):\n\n{table(reports)}\n{END}")
    if args.write:
        text = args.write.read_text()
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: result, text, flags=re.S)
        args.write.write_text(text)
    print(result)
    sys.exit(code)


if __name__ == "__main__":
    main()
