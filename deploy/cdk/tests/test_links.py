"""Issue 7 item 10: no stack imports an export of a stack whose resources can be replaced or switched.

CloudFormation refuses to delete or change an export another stack imports. Switching web_platform removed
the bridge stack's cluster/listener exports and the web stack's target group export while Web/Observability
still imported them; replacing the database, Redis or the RDS Proxy changed exports Bridge/Web/Webhook
imported. Values now travel through SSM parameters (voiceops_cdk/links.py); only the foundation stacks
(Ci, Network, Static: named or never-replaced resources) still export.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Template
from conftest import Synth
from voiceops_cdk.app import VoiceOps, build, stack_name
from voiceops_cdk.links import FOUNDATION_STACKS, link_name

SSM_PARAMETER_TYPE = "AWS::SSM::Parameter::Value<String>"


def _imports(template: dict[str, Any]) -> set[str]:
    return set(re.findall(r'"Fn::ImportValue": "([^"]+)"', json.dumps(template)))


def _exports(template: dict[str, Any]) -> set[str]:
    return {json.dumps(o["Export"]["Name"]) for o in template.get("Outputs", {}).values() if "Export" in o}


def _templates(voiceops: VoiceOps) -> dict[str, dict[str, Any]]:
    return {name: Template.from_stack(stack).to_json() for name, stack in voiceops.stacks.items()}


@pytest.fixture(scope="module")
def dev_variants() -> dict[str, dict[str, dict[str, Any]]]:
    """The same stage on both web platforms: what an operator switches between."""
    return {
        platform: _templates(build({"stage": "dev", "web_platform": platform}, nag=False))
        for platform in ("fargate", "apprunner")
    }


def test_only_foundation_stacks_are_imported_from(each: Synth) -> None:
    foundation = {stack_name(each.settings, boundary) for boundary in FOUNDATION_STACKS}
    for boundary in each.voiceops.stacks:
        for imported in _imports(each.template(boundary).to_json()):
            producer = imported.split(":", 1)[0]
            assert producer in foundation, f"{boundary} imports {imported}: replacing it would fail (export in use)"


def test_switching_the_web_platform_strands_no_export(dev_variants: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Each stack exports the same names on both platforms, so the stack that deploys first on a switch never
    deletes an export the other, not yet updated, still imports."""
    fargate, apprunner = dev_variants["fargate"], dev_variants["apprunner"]
    for boundary in fargate:
        assert _exports(fargate[boundary]) == _exports(apprunner[boundary]), boundary


def test_every_link_a_stack_reads_is_written_by_a_stack_it_deploys_after(each: Synth) -> None:
    prefix = link_name(each.settings, "")
    written: dict[str, str] = {}
    for boundary in each.voiceops.stacks:
        for resource in each.template(boundary).find_resources("AWS::SSM::Parameter").values():
            name = resource["Properties"]["Name"]
            if isinstance(name, str) and name.startswith(prefix):
                written[name] = boundary
    assert written, "no SSM links at all"
    for boundary, stack in each.voiceops.stacks.items():
        parameters = each.template(boundary).to_json().get("Parameters", {})
        read = [p["Default"] for p in parameters.values() if p["Type"] == SSM_PARAMETER_TYPE]
        for name in (n for n in read if n.startswith(prefix)):
            assert name in written, f"{boundary} reads {name}, which no stack writes"
            producer = each.voiceops.stacks[written[name]]
            assert producer in stack.dependencies, f"{boundary} reads {name} but may deploy before {written[name]}"


def test_replaceable_values_travel_through_ssm(each: Synth) -> None:
    """The values that change when a resource is replaced are the ones the links carry."""
    data = {r["Properties"]["Name"] for r in each.template("data").find_resources("AWS::SSM::Parameter").values()}
    for key in ("db-host", "db-secret-arn", "db-proxy-endpoint", "redis-url", "db-instance-id"):
        assert link_name(each.settings, key) in data
    bridge = each.template("bridge").to_json()["Parameters"]
    assert any(p.get("Default") == link_name(each.settings, "redis-url") for p in bridge.values())
