"""Small readers over synthesized templates."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Template


def resources(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return template.find_resources(resource_type)


def only(template: Template, resource_type: str) -> dict[str, Any]:
    found = resources(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {list(found)}"
    return next(iter(found.values()))


def logical_id(template: Template, resource_type: str, prefix: str) -> str:
    matches = [name for name in resources(template, resource_type) if name.startswith(prefix)]
    assert len(matches) == 1, f"expected one {resource_type} named {prefix}*, found {matches}"
    return matches[0]


def containers(template: Template) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for task in resources(template, "AWS::ECS::TaskDefinition").values():
        for container in task["Properties"]["ContainerDefinitions"]:
            out[f"{task['Properties']['Family']}/{container['Name']}"] = container
    return out


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in container.get("Environment", [])}


def text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def statements(template: Template) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found
