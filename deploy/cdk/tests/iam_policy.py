"""Evaluates a role's synthesized identity policies for (action, resource, condition keys), as IAM would.

Covers what the deploy role uses: Allow/Deny statements, `*`/`?` wildcards in actions and resources, and the
StringEquals/StringLike/ArnEquals/ArnLike condition operators (a condition key missing from the request
fails the condition). https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
CloudFormation intrinsics in the template are resolved for one account and region; an intrinsic it does not
know raises instead of guessing.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

PSEUDO = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class Resolver:
    def __init__(self, resources: dict[str, Any], account: str, region: str) -> None:
        self.resources = resources
        self.values = {**PSEUDO, "AWS::AccountId": account, "AWS::Region": region}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return [self(v) for v in value]
        ((fn, arg),) = value.items()
        if fn == "Ref":
            if arg in self.values:
                return self.values[arg]
            return self._ref(arg)
        if fn == "Fn::Join":
            return arg[0].join(self(part) for part in arg[1])
        if fn == "Fn::GetAtt" and arg[1] == "Arn":
            return self._arn(arg[0])
        raise ValueError(f"intrinsic not resolvable here: {value}")

    def _ref(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        props = resource["Properties"]
        kind = resource["Type"]
        if kind == "AWS::ECR::Repository":
            return self(props["RepositoryName"])
        if kind == "AWS::S3::Bucket":
            return self(props["BucketName"])
        if kind == "AWS::SSM::Parameter":
            return self(props["Name"])
        raise ValueError(f"Ref to {kind} not resolvable here")

    def _arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        region, account = self.values["AWS::Region"], self.values["AWS::AccountId"]
        if kind == "AWS::ECR::Repository":
            return f"arn:aws:ecr:{region}:{account}:repository/{self._ref(logical_id)}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self._ref(logical_id)}"
        raise ValueError(f"GetAtt Arn of {kind} not resolvable here")


@dataclass
class Policy:
    statements: list[dict[str, Any]]

    @classmethod
    def of_role(cls, template: dict[str, Any], role_prefix: str, account: str, region: str) -> Policy:
        """Every identity-policy statement attached to the role whose logical id starts with role_prefix."""
        resources = template["Resources"]
        roles = [k for k, v in resources.items() if v["Type"] == "AWS::IAM::Role" and k.startswith(role_prefix)]
        assert len(roles) == 1, roles
        resolve = Resolver(resources, account, region)
        statements: list[dict[str, Any]] = []
        for resource in resources.values():
            if resource["Type"] != "AWS::IAM::Policy":
                continue
            if {"Ref": roles[0]} not in resource["Properties"].get("Roles", []):
                continue
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                statements.append(
                    {
                        "Effect": statement["Effect"],
                        "Action": _listify(statement["Action"]),
                        "Resource": [resolve(r) for r in _listify(statement["Resource"])],
                        "Condition": {
                            op: {key: [resolve(v) for v in _listify(vals)] for key, vals in cond.items()}
                            for op, cond in statement.get("Condition", {}).items()
                        },
                    }
                )
        for inline in resources[roles[0]]["Properties"].get("Policies", []):
            raise AssertionError(f"inline policy {inline['PolicyName']} not evaluated")
        return cls(statements)

    def allows(self, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
        context = context or {}
        matching = [s for s in self.statements if _matches(s, action, resource, context)]
        return any(s["Effect"] == "Allow" for s in matching) and not any(s["Effect"] == "Deny" for s in matching)


def _glob(pattern: str, value: str, *, case: bool = True) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _matches(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    if not any(_glob(a, action, case=False) for a in statement["Action"]):
        return False
    if not any(_glob(r, resource) for r in statement["Resource"]):
        return False
    for op, conditions in statement["Condition"].items():
        for key, wanted in conditions.items():
            got = context.get(key)
            if got is None:
                return False
            if op in ("StringEquals", "ArnEquals") and got not in wanted:
                return False
            if op in ("StringLike", "ArnLike") and not any(fnmatch.fnmatchcase(got, w) for w in wanted):
                return False
            if op not in ("StringEquals", "ArnEquals", "StringLike", "ArnLike"):
                raise ValueError(f"condition operator {op} not evaluated here")
    return True
