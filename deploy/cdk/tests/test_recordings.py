"""Call recordings (docs/recordings.md): a private bucket of their own, its name in the app's environment, and
object rights for the bridge (writes) and the web side (signs URLs, purge_calls deletes) only."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template
from conftest import Synth
from helpers import containers, env_of, logical_id, only, resources, text
from voiceops_cdk.app import build

RECORDINGS = "-recordings-"
WRITER = {"s3:PutObject", "s3:GetObject", "s3:DeleteObject"}
READER = {"s3:GetObject", "s3:DeleteObject"}


def recordings_bucket(template: Template) -> dict[str, Any]:
    return resources(template, "AWS::S3::Bucket")[logical_id(template, "AWS::S3::Bucket", "Recordings")]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def recordings_grants(synth: Synth) -> dict[str, set[str]]:
    """Role name -> every action any IAM policy of the app gives it on the recordings bucket or its objects."""
    grants: dict[str, set[str]] = {}
    for boundary in synth.voiceops.stacks:
        template = synth.template(boundary)
        roles = resources(template, "AWS::IAM::Role")
        for policy in resources(template, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if RECORDINGS not in text(statement.get("Resource")):
                    continue
                assert statement["Effect"] == "Allow"
                for role_ref in policy["Properties"]["Roles"]:
                    name = roles[role_ref["Ref"]]["Properties"]["RoleName"]
                    grants.setdefault(name, set()).update(as_list(statement["Action"]))
    return grants


def test_recordings_bucket_is_private_tls_only_encrypted_logged_and_unversioned(each: Synth) -> None:
    template = each.template("static")
    bucket = recordings_bucket(template)
    props = bucket["Properties"]
    assert RECORDINGS in text(props["BucketName"])
    block = props["PublicAccessBlockConfiguration"]
    assert all(block[k] for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "AES256"
    logs = props["LoggingConfiguration"]
    assert logs["DestinationBucketName"] == {"Ref": logical_id(template, "AWS::S3::Bucket", "AccessLogs")}
    assert logs["LogFilePrefix"] == "s3-recordings/"
    # Unversioned: a purged recording leaves no noncurrent version behind.
    assert "VersioningConfiguration" not in props
    # No expiry unless asked for (recordings_retention_days); purge_calls decides.
    assert "Expiration" not in text(props.get("LifecycleConfiguration", {})), props.get("LifecycleConfiguration")
    expected_policy = "Retain" if each.settings.is_prod else "Delete"
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == expected_policy

    # Not a CloudFront origin, and its own policy lets no one in: it only refuses plain HTTP (and, in dev,
    # lets CDK's auto-delete provider empty it when the stack is destroyed).
    assert "Recordings" not in text(only(template, "AWS::CloudFront::Distribution"))
    bucket_id = logical_id(template, "AWS::S3::Bucket", "Recordings")
    policies = resources(template, "AWS::S3::BucketPolicy").values()
    policy = next(p for p in policies if p["Properties"]["Bucket"] == {"Ref": bucket_id})
    allowed = []
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        if statement["Effect"] == "Deny":
            assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        else:
            allowed.append(text(statement["Principal"]))
    assert all("AutoDeleteObjects" in principal for principal in allowed)
    assert bool(allowed) is (not each.settings.is_prod)


def test_recordings_retention_days_adds_an_expiry_and_refuses_negatives() -> None:
    voiceops = build({"stage": "dev", "recordings_retention_days": "30"}, nag=False)
    rules = recordings_bucket(Template.from_stack(voiceops.static))["Properties"]["LifecycleConfiguration"]["Rules"]
    assert [rule["ExpirationInDays"] for rule in rules if "ExpirationInDays" in rule] == [30]
    with pytest.raises(ValueError, match="recordings_retention_days"):
        build({"stage": "dev", "recordings_retention_days": "-1"}, nag=False)


def test_bridge_web_and_release_know_the_bucket(each: Synth) -> None:
    name = text(recordings_bucket(each.template("static"))["Properties"]["BucketName"])
    apps = {
        key: env_of(container)
        for boundary in ("bridge", "web")
        for key, container in containers(each.template(boundary)).items()
        if not key.endswith("/otel-collector")
    }
    expected = {"bridge", "release"} | ({"web"} if each.settings.web_platform == "fargate" else set())
    assert {key.split("/")[1] for key in apps} == expected
    for key, env in apps.items():
        assert text(env["RECORDINGS_BUCKET_NAME"]) == name, key
    if each.settings.web_platform == "apprunner":
        service = only(each.template("web"), "AWS::AppRunner::Service")["Properties"]
        variables = service["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]
        env = {item["Name"]: item["Value"] for item in variables["RuntimeEnvironmentVariables"]}
        assert text(env["RECORDINGS_BUCKET_NAME"]) == name


def test_only_the_bridge_and_web_roles_reach_recordings_with_exactly_their_rights(each: Synth) -> None:
    prefix = each.settings.name_prefix
    web_role = f"{prefix}-web-task" if each.settings.web_platform == "fargate" else f"{prefix}-web-apprunner-instance"
    assert recordings_grants(each) == {
        f"{prefix}-bridge-task": WRITER | {"s3:ListBucket"},
        web_role: READER | {"s3:ListBucket"},
        f"{prefix}-release-task": READER | {"s3:ListBucket"},  # purge_calls runs as the release task
    }
    # ListBucket on the bucket, object actions on its objects, nothing broader.
    for boundary in ("bridge", "web"):
        for policy in resources(each.template(boundary), "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                resource = text(statement.get("Resource"))
                if RECORDINGS in resource:
                    assert ('/*"' in resource) == (statement["Action"] != "s3:ListBucket"), statement
                actions = text(statement["Action"])
                assert "s3:*" not in actions and not (statement.get("Resource") == "*" and "s3:" in actions)
