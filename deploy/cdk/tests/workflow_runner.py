"""Runs a GitHub Actions job's steps locally, the way the runner would, for the release rehearsal.

Only what deploy.yml uses is understood; anything else raises instead of being skipped:
- `${{ … }}` with `steps.<id>.outputs.<name>`, `env.<name>`, `vars.<name>`, `github.<name>`, a string
  literal, `a || b`, and `a == b` / `a != b` (in `if:`);
- `run:` steps run with `bash --noprofile --norc -eo pipefail` (GitHub's default shell on Linux) in the
  repository, with the workflow, job and step `env`, `GITHUB_OUTPUT` collected into the step's outputs;
- `uses:` steps run the stand-in the caller gives for that action (keyed by `owner/name`).
A failing step stops the job: later steps are skipped (they have no `if: always()` or `failure()`).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class StepResult:
    name: str
    skipped: bool
    returncode: int = 0
    output: str = ""


@dataclass
class JobRun:
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.returncode == 0 for step in self.steps)

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.name} (rc={s.returncode}, skipped={s.skipped})\n{s.output}" for s in self.steps)

    def step(self, prefix: str) -> StepResult:
        found = [s for s in self.steps if s.name.startswith(prefix)]
        assert len(found) == 1, f"expected one step named {prefix}…, found {[s.name for s in found]}"
        return found[0]


class Context:
    def __init__(self, env: dict[str, str], variables: dict[str, str], github: dict[str, str]) -> None:
        self.env = env
        self.vars = variables
        self.github = github
        self.steps: dict[str, dict[str, str]] = {}

    def value(self, expr: str) -> str:
        expr = expr.strip()
        if "||" in expr:
            for part in expr.split("||"):
                value = self.value(part)
                if value:
                    return value
            return ""
        for op in ("==", "!="):
            if op in expr:
                left, right = (self.value(side) for side in expr.split(op))
                return "true" if (left == right) == (op == "==") else ""
        if re.fullmatch(r"'[^']*'", expr):
            return expr[1:-1]
        parts = expr.split(".")
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            return self.steps.get(parts[1], {}).get(parts[3], "")
        if len(parts) == 2 and parts[0] in ("env", "vars", "github"):
            return getattr(self, parts[0]).get(parts[1], "")
        raise ValueError(f"expression not understood by this runner: {expr!r}")

    def render(self, text: Any) -> str:
        return EXPR.sub(lambda m: self.value(m.group(1)), str(text))

    def condition(self, text: str | None) -> bool:
        if text is None:
            return True
        inner = EXPR.fullmatch(text.strip())
        return bool(self.value(inner.group(1) if inner else text))


def run_job(
    workflow: Path,
    job: str,
    *,
    repo: Path,
    base_env: dict[str, str],
    variables: dict[str, str],
    github: dict[str, str],
    actions: dict[str, Callable[[dict[str, str], dict[str, Any]], None]],
    replace: dict[str, str] | None = None,
) -> JobRun:
    """Runs `job` of `workflow`. `replace` swaps exact text in `run:` scripts (each must occur)."""
    spec = yaml.safe_load(workflow.read_text())
    ctx = Context(dict(base_env), variables, github)
    for scope in (spec.get("env", {}), spec["jobs"][job].get("env", {})):
        for key, value in scope.items():
            ctx.env[key] = ctx.render(value)
    unused = dict(replace or {})
    result = JobRun()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for index, step in enumerate(spec["jobs"][job]["steps"]):
            name = step.get("name") or step.get("uses") or f"step {index}"
            if failed or not ctx.condition(step.get("if")):
                result.steps.append(StepResult(name, skipped=True))
                continue
            env = dict(ctx.env)
            for key, value in step.get("env", {}).items():
                env[key] = ctx.render(value)
            if "uses" in step:
                action = step["uses"].split("@")[0]
                if action not in actions:
                    raise ValueError(f"no stand-in for action {action}")
                inputs = {k: ctx.render(v) for k, v in step.get("with", {}).items()}
                actions[action](env, inputs)
                result.steps.append(StepResult(name, skipped=False))
                continue
            script = ctx.render(step["run"])
            for old, new in (replace or {}).items():
                if old in script:
                    script = script.replace(old, new)
                    unused.pop(old, None)
            outputs = Path(tmp) / f"output-{index}"
            outputs.touch()
            env.update(GITHUB_OUTPUT=str(outputs), RUNNER_TEMP=tmp)
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                cwd=repo,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            result.steps.append(StepResult(name, False, done.returncode, done.stdout + done.stderr))
            if step.get("id"):
                ctx.steps[step["id"]] = dict(
                    line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line
                )
            failed = done.returncode != 0
    if not failed:
        assert not unused, f"replacements that matched no run step: {list(unused)}"
    return result


def process_env() -> dict[str, str]:
    """The parts of this process's environment a runner shell needs (PATH, HOME, locale)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {key: os.environ[key] for key in keep if key in os.environ}
