"""Issue 7 items 3 and 7: a 55-minute call on an old bridge task survives a deployment, a scale-in and any
other stop of its task, and a release finishes within the longest call plus a margin. The ECS/ALB rules
(R1-R6, with their AWS documentation sources) are in drain_model.py; the numbers come from the synthesized
bridge template, so these tests fail when the template would cut calls."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import Synth
from drain_model import (
    CALL_LENGTH_S,
    NEW_TASK_BOOT_S,
    POLITE_END_S,
    Numbers,
    deployment,
    describe,
    scale_in,
    stop_ignoring_protection,
)
from voiceops_cdk.config import FARGATE_MAX_STOP_TIMEOUT_S


def _max_call_minutes() -> int:
    """AgentConfig.max_call_minutes's upper bound, read from the model so a change there is checked here."""
    models = (Path(__file__).resolve().parents[3] / "calls" / "models.py").read_text()
    field = re.search(r"max_call_minutes = models\.PositiveIntegerField\((.*?)\n    \)", models, re.S)
    assert field, "AgentConfig.max_call_minutes not found in calls/models.py"
    bound = re.search(r"MaxValueValidator\((\w+)\)", field.group(1))
    assert bound, "AgentConfig.max_call_minutes has no MaxValueValidator"
    if bound.group(1).isdigit():
        return int(bound.group(1))
    constant = re.search(rf"^{bound.group(1)} = (\d+)", models, re.M)  # a module-level constant
    assert constant, f"{bound.group(1)} not found in calls/models.py"
    return int(constant.group(1))


MAX_CALL_MINUTES = _max_call_minutes()

RELEASE_MARGIN_S = 5 * 60.0
# A call that started 5 minutes before the release and lasts 55 minutes.
WATCHED_CALL = (-5 * 60.0, -5 * 60.0 + CALL_LENGTH_S)

# What the bridge template said before this change: deregistration delay = stopTimeout = 120 s, and the
# bridge protected its task from scale-in while it had calls.
BEFORE = Numbers(
    deregistration_delay_s=120,
    stop_timeout_s=120,
    drain_timeout_s=110,
    health_interval_s=10,
    healthy_threshold=2,
    min_healthy_percent=100,
    max_percent=200,
    protects_itself=True,
)


def numbers(synth: Synth) -> Numbers:
    return Numbers.from_template(synth.template("bridge"), f"{synth.settings.name_prefix}-bridge")


def test_deployment_never_cuts_a_55_minute_call_and_finishes_after_it(each: Synth) -> None:
    n = numbers(each)
    outcome = deployment(n, watched_call=WATCHED_CALL)
    assert outcome.cut_calls == [], describe(outcome)
    # R1 + R4: once the new task is healthy, the ALB sends new calls only to it.
    assert outcome.calls_sent_to_old_task_after_new_was_healthy == 0, describe(outcome)
    # The release waits for the old task's calls, and for no more than the longest call plus a margin.
    longest = NEW_TASK_BOOT_S + n.healthy_threshold * n.health_interval_s + MAX_CALL_MINUTES * 60
    assert outcome.stopped_at is not None, f"the deployment never completes: {describe(outcome)}"
    assert WATCHED_CALL[1] <= outcome.stopped_at <= longest + RELEASE_MARGIN_S, describe(outcome)


def test_scale_in_never_cuts_a_55_minute_call(each: Synth) -> None:
    for at in (0.0, 20 * 60.0, 50 * 60.0):
        outcome = scale_in(numbers(each), watched_call=WATCHED_CALL, scale_in_at=at)
        assert outcome.cut_calls == [], describe(outcome)


def test_a_stop_that_protection_cannot_hold_back_never_cuts_a_call_either(each: Synth) -> None:
    """Fargate task retirement, the replacement of a task that fails its health check, `ecs stop-task`:
    protection does not stop these, deregistration draining does."""
    outcome = stop_ignoring_protection(numbers(each), watched_call=WATCHED_CALL, stop_at=0.0)
    assert outcome.cut_calls == [], describe(outcome)
    assert outcome.stopped_at == pytest.approx(WATCHED_CALL[1])  # SIGTERM finds an idle process


def test_the_longest_call_fits_in_the_deregistration_delay_and_the_drain_in_stop_timeout(each: Synth) -> None:
    n = numbers(each)
    assert MAX_CALL_MINUTES * 60 < n.deregistration_delay_s <= 3600  # 3600 s: the ALB's maximum (R4)
    assert n.stop_timeout_s <= FARGATE_MAX_STOP_TIMEOUT_S  # R5
    assert n.drain_timeout_s + POLITE_END_S < n.stop_timeout_s, "the app's drain must end before SIGKILL"
    assert (n.min_healthy_percent, n.max_percent) == (100, 200)  # R1: new tasks first
    assert not n.protects_itself, "task protection blocks deployments (R2)"


def test_the_model_reproduces_the_old_numbers_cutting_calls_at_about_120_s() -> None:
    """Checks the model itself against the issue's account of the old template."""
    forced = stop_ignoring_protection(BEFORE, watched_call=WATCHED_CALL, stop_at=0.0)
    assert [cut_at for _, _, cut_at in forced.cut_calls] == [120.0]
    stalled = deployment(BEFORE, watched_call=WATCHED_CALL)
    assert stalled.stopped_at is None  # the protected old task never goes idle: the deployment never ends
    assert stalled.calls_sent_to_old_task_after_new_was_healthy > 100  # and keeps taking new calls
