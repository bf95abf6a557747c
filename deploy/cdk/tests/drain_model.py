"""A small model of the ECS and ALB rules that decide when a bridge task stops, fed with the numbers of the
synthesized bridge template. Pure Python, no AWS: each rule below is written down with its documentation
source, because none of it can run here.

R1  Rolling deployments (ECS deployment type): maximumPercent caps RUNNING+PENDING tasks, minimumHealthyPercent
    is the floor of healthy tasks; with a load balancer a task counts as healthy once it passes the target
    group's health check. 100/200: ECS starts the new task first and stops an old one only once the new one is
    healthy. https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-type-ecs.html
R2  Task scale-in protection: "protect your tasks from being terminated by scale-in events from either service
    auto scaling or deployments"; a protected task is not stopped (so not deregistered) until protection is
    removed or expires. https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection.html
    It does not stop the ALB from routing new connections to the task: the task stays a healthy registered
    target, so a busy bridge task never goes idle and keeps itself protected.
R3  ECS removes a service task from its target group and waits for the target to be UNUSED (connection
    draining) before it sends the stop signal. https://docs.aws.amazon.com/AmazonECS/latest/developerguide/
    load-balancer-connection-draining.html; the same path serves deployments, scale-in and any stop of a
    service task (task lifecycle, DEACTIVATING: "the load balancer deregistration occurs during this state",
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-lifecycle-explanation.html).
R4  ALB deregistration: "Elastic Load Balancing stops sending requests to targets that are deregistering";
    established connections (a WebSocket is one) go on; the target becomes unused when it has no in-flight
    request and no active connection, or when the deregistration delay (0-3600 s) elapses, whichever is first;
    connections still open then are closed.
    https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html
    #deregistration-delay
R5  After the stop signal (SIGTERM) ECS waits the container's stopTimeout, at most 120 s on Fargate, then sends
    SIGKILL. https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html (stopTimeout)
    The bridge then drains DRAIN_TIMEOUT_S and ends what is left politely within 5 s (bridge/lifecycle.py).
R6  Scale-in lowers desiredCount; ECS stops the surplus tasks through R3, skipping protected ones (R2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aws_cdk.assertions import Template
from helpers import containers, env_of, only, statements, text

NEW_TASK_BOOT_S = 60.0  # Fargate start + image pull + app start, before the first health check
POLITE_END_S = 5.0  # bridge/lifecycle.py: BridgeState.drain ends leftover calls within 5 s
CALL_EVERY_S = 60.0  # a busy line: a new call every minute across the service
CALL_LENGTH_S = 55 * 60.0
HORIZON_S = 6 * 3600.0


@dataclass(frozen=True)
class Numbers:
    deregistration_delay_s: float
    stop_timeout_s: float
    drain_timeout_s: float
    health_interval_s: float
    healthy_threshold: int
    min_healthy_percent: int
    max_percent: int
    protects_itself: bool  # the bridge turns task scale-in protection on while it carries calls

    @classmethod
    def from_template(cls, template: Template, family: str) -> Numbers:
        target_group = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")["Properties"]
        attributes = {a["Key"]: a["Value"] for a in target_group["TargetGroupAttributes"]}
        bridge = containers(template)[f"{family}/bridge"]
        deployment = only(template, "AWS::ECS::Service")["Properties"]["DeploymentConfiguration"]
        return cls(
            deregistration_delay_s=float(attributes["deregistration_delay.timeout_seconds"]),
            stop_timeout_s=float(bridge["StopTimeout"]),
            drain_timeout_s=float(env_of(bridge)["DRAIN_TIMEOUT_S"]),
            health_interval_s=float(target_group["HealthCheckIntervalSeconds"]),
            healthy_threshold=int(target_group["HealthyThresholdCount"]),
            min_healthy_percent=int(deployment["MinimumHealthyPercent"]),
            max_percent=int(deployment["MaximumPercent"]),
            protects_itself="ecs:UpdateTaskProtection" in text(statements(template)),
        )


@dataclass
class Task:
    name: str
    calls: list[tuple[float, float]] = field(default_factory=list)  # (start, natural end)
    healthy_at: float = 0.0
    deregistered_at: float | None = None

    def live_at(self, t: float) -> bool:
        return any(start <= t < end for start, end in self.calls)

    def takes_calls_at(self, t: float) -> bool:
        return self.healthy_at <= t and (self.deregistered_at is None or t < self.deregistered_at)


@dataclass
class Outcome:
    cut_calls: list[tuple[float, float, float]]  # (start, natural end, cut at)
    stopped_at: float | None  # when the old task was gone; None: not within the horizon
    calls_sent_to_old_task_after_new_was_healthy: int = 0


def _route_calls(tasks: list[Task], start: float, until: float) -> None:
    """The ALB spreads new calls over the healthy registered targets (R4: none to a deregistering one)."""
    turn = 0
    t = start
    while t < until:
        open_targets = [task for task in tasks if task.takes_calls_at(t)]
        if open_targets:
            open_targets[turn % len(open_targets)].calls.append((t, t + CALL_LENGTH_S))
            turn += 1
        t += CALL_EVERY_S


def _stop_through_deregistration(task: Task, n: Numbers, at: float) -> Outcome:
    """R3-R5: deregister at `at`; the target is unused when its calls are over or the delay elapses."""
    task.deregistered_at = at
    calls_end = max((end for start, end in task.calls if start < at), default=at)
    delay_ends = at + n.deregistration_delay_s
    unused_at = min(max(calls_end, at), delay_ends)
    cut = [(s, e, delay_ends) for s, e in task.calls if s < at and e > delay_ends]  # R4: closed by the ALB
    sigterm_at = unused_at
    leftover = [(s, e) for s, e in task.calls if s < sigterm_at < e]
    exit_after = min(n.drain_timeout_s + POLITE_END_S, n.stop_timeout_s) if leftover else 0.0
    return Outcome(cut_calls=cut, stopped_at=sigterm_at + exit_after)


def _first_idle_moment(task: Task, after: float) -> float | None:
    """When a protected task (R2) first carries no call at or after `after`."""
    moments = sorted({after, *(end for _, end in task.calls if end >= after)})
    return next((t for t in moments if t < HORIZON_S and not task.live_at(t)), None)


def deployment(n: Numbers, *, watched_call: tuple[float, float], deploy_at: float = 0.0) -> Outcome:
    """One old task carrying `watched_call` (and new calls as they come), one desired task; a new task
    definition is deployed at `deploy_at`."""
    old = Task("old", calls=[watched_call], healthy_at=-3600.0)
    new = Task("new", healthy_at=HORIZON_S)
    desired = 1
    can_start_first = desired * n.max_percent // 100 > desired  # R1
    waits_for_healthy = n.min_healthy_percent >= 100
    if can_start_first:
        new.healthy_at = deploy_at + NEW_TASK_BOOT_S + n.healthy_threshold * n.health_interval_s
    stop_old_from = new.healthy_at if waits_for_healthy else deploy_at
    if not can_start_first and waits_for_healthy:
        return Outcome(cut_calls=[], stopped_at=None)  # neither side may move: the deployment stalls
    if n.protects_itself:
        # R2: ECS may stop the old task only at a moment it carries no call; meanwhile it takes new ones.
        _route_calls([old, new], deploy_at, HORIZON_S)
        idle = _first_idle_moment(old, stop_old_from)
        after_healthy = sum(1 for s, _ in old.calls if s >= new.healthy_at)
        if idle is None:
            return Outcome(cut_calls=[], stopped_at=None, calls_sent_to_old_task_after_new_was_healthy=after_healthy)
        old.calls = [(s, e) for s, e in old.calls if s < idle]
        outcome = _stop_through_deregistration(old, n, idle)
        outcome.calls_sent_to_old_task_after_new_was_healthy = after_healthy
        return outcome
    _route_calls([old, new], deploy_at, stop_old_from)
    outcome = _stop_through_deregistration(old, n, stop_old_from)
    outcome.calls_sent_to_old_task_after_new_was_healthy = sum(1 for s, _ in old.calls if s >= new.healthy_at)
    return outcome


def stop_ignoring_protection(n: Numbers, *, watched_call: tuple[float, float], stop_at: float) -> Outcome:
    """A stop that protection does not hold back (Fargate task retirement, replacement of a task that fails
    its health check, `aws ecs stop-task`): still R3-R5 for a service task."""
    task = Task("busy", calls=[watched_call], healthy_at=-3600.0)
    return _stop_through_deregistration(task, n, stop_at)


def scale_in(n: Numbers, *, watched_call: tuple[float, float], scale_in_at: float) -> Outcome:
    """Two tasks, each with a call (the watched one on the first); desired count drops from 2 to 1 (R6)."""
    busy = Task("busy", calls=[watched_call], healthy_at=-3600.0)
    other = Task("other", calls=[(watched_call[0], watched_call[0] + 10 * 60.0)], healthy_at=-3600.0)
    candidates = [busy, other]
    if n.protects_itself:
        at = min(
            (idle for task in candidates if (idle := _first_idle_moment(task, scale_in_at)) is not None),
            default=None,
        )
        if at is None:
            return Outcome(cut_calls=[], stopped_at=None)
        victim = next(task for task in candidates if not task.live_at(at))
        return _stop_through_deregistration(victim, n, at)
    # Without protection ECS may pick the task with the long call: the worst case is the one to check.
    return _stop_through_deregistration(busy, n, scale_in_at)


def describe(outcome: Outcome) -> dict[str, Any]:
    return {
        "cut": [(round(s), round(e), round(c)) for s, e, c in outcome.cut_calls],
        "stopped_at": None if outcome.stopped_at is None else round(outcome.stopped_at),
        "new calls on the old task after the new one was healthy": outcome.calls_sent_to_old_task_after_new_was_healthy,
    }
