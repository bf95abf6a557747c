"""The dashboard's live WebSocket outlasts every load balancer's idle timeout: the app sends a heartbeat on a quiet
line every LIVE_FEED_HEARTBEAT_S (voiceops/settings.py, read from the code, which the CDK app cannot import), and an
ALB cuts a connection that carries no frame for its idle timeout (60 s when the template does not set it)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from conftest import Synth
from helpers import containers, env_of, resources

REPO = Path(__file__).resolve().parents[3]
SETTING = "LIVE_FEED_HEARTBEAT_S"
ALB_DEFAULT_IDLE_TIMEOUT_S = 60
# "Well inside": a heartbeat delayed by a busy task, or one lost with its connection, still leaves time for the next.
HEARTBEATS_PER_IDLE_TIMEOUT = 2


def heartbeat_default_s() -> int:
    """The default of `LIVE_FEED_HEARTBEAT_S: int = env.int("LIVE_FEED_HEARTBEAT_S", default=N, ...)`."""
    tree = ast.parse((REPO / "voiceops" / "settings.py").read_text())
    for node in tree.body:
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == SETTING
                and isinstance(node.value, ast.Call)):
            default = next((kw.value for kw in node.value.keywords if kw.arg == "default"), None)
            assert default is not None, f"{SETTING} in voiceops/settings.py has no default="
            return int(ast.literal_eval(default))
    raise AssertionError(f"{SETTING} not found in voiceops/settings.py")


def heartbeats_s(each: Synth) -> list[int]:
    """The heartbeat interval each deployed app component runs with: its own value when the stack sets one."""
    default = heartbeat_default_s()
    found = [default]
    for boundary in each.voiceops.stacks:
        template = each.template(boundary)
        for container in containers(template).values():
            found.append(int(env_of(container).get(SETTING, default)))
        for service in resources(template, "AWS::AppRunner::Service").values():
            image = service["Properties"]["SourceConfiguration"].get("ImageRepository", {})
            variables = image.get("ImageConfiguration", {}).get("RuntimeEnvironmentVariables", [])
            found.extend(int(item["Value"]) for item in variables if item["Name"] == SETTING)
    return found


def alb_idle_timeouts_s(each: Synth) -> dict[str, int]:
    timeouts: dict[str, int] = {}
    for boundary in each.voiceops.stacks:
        for name, alb in resources(each.template(boundary), "AWS::ElasticLoadBalancingV2::LoadBalancer").items():
            properties: dict[str, Any] = alb["Properties"]
            if properties.get("Type", "application") != "application":
                continue
            attributes = {a["Key"]: a["Value"] for a in properties.get("LoadBalancerAttributes", [])}
            timeouts[f"{boundary}/{name}"] = int(attributes.get("idle_timeout.timeout_seconds",
                                                                ALB_DEFAULT_IDLE_TIMEOUT_S))
    return timeouts


def test_every_alb_idle_timeout_outlasts_the_live_feed_heartbeat(each: Synth) -> None:
    timeouts = alb_idle_timeouts_s(each)
    assert timeouts, "no ALB found: the dashboard's live feed and the bridge's streams go through one"
    heartbeat = max(heartbeats_s(each))
    too_short = {name: s for name, s in timeouts.items() if s < HEARTBEATS_PER_IDLE_TIMEOUT * heartbeat}
    assert not too_short, (
        f"these ALBs would cut an idle dashboard feed: idle timeout below {HEARTBEATS_PER_IDLE_TIMEOUT} x the "
        f"{heartbeat} s heartbeat ({SETTING}): {too_short}")
