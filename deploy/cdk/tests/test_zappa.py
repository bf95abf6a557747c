"""The Zappa path for the webhook slice is level with the CDK webhook: runtime, VPC, database and secrets."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_fake import FakeAws
from conftest import Synth
from helpers import only, statements
from release_rehearsal import REPO, cli_env, provision

SETTINGS = REPO / "deploy" / "zappa_settings.json"
# Set by the CDK for the ADOT layer, which the Zappa variant does not use (it has its own X-Ray switch).
CDK_ONLY = {"AWS_LAMBDA_EXEC_WRAPPER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_PROPAGATORS"}
# Account-specific: filled in from the deployed stage by deploy/zappa_settings_from_stack.sh.
FILLED = {"DB_HOST", "DB_SECRET_ARN"}


def stage_settings(stage: str) -> dict:
    settings = json.loads(SETTINGS.read_text())
    own = settings[stage]
    return {**settings.get(own.get("extends", ""), {}), **own}


def test_zappa_matches_the_cdk_webhook(dev: Synth) -> None:
    function = only(dev.template("webhook"), "AWS::Lambda::Function")["Properties"]
    cdk_env = set(function["Environment"]["Variables"])
    for stage in ("dev", "prod"):
        zappa = stage_settings(stage)
        assert zappa["runtime"] == function["Runtime"] == "python3.13"
        assert zappa["timeout_seconds"] == function["Timeout"]
        assert zappa["memory_size"] == function["MemorySize"]
        assert set(zappa["vpc_config"]) == {"SubnetIds", "SecurityGroupIds"}
        env = zappa["environment_variables"]
        assert cdk_env - CDK_ONLY - FILLED <= set(env), cdk_env - CDK_ONLY - FILLED - set(env)
        assert env["DB_SSLMODE"] == "require" and env["VOICEOPS_SSM_PREFIX"] == f"/voiceops/{stage}/"
        granted = {
            (action, resource)
            for statement in zappa["extra_permissions"]
            for action in statement["Action"]
            for resource in (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
        }
        assert ("ssm:GetParametersByPath", f"arn:aws:ssm:us-east-1:*:parameter/voiceops/{stage}") in granted
        assert ("ssm:GetParameters", f"arn:aws:ssm:us-east-1:*:parameter/voiceops/{stage}/*") in granted
        assert (
            "secretsmanager:GetSecretValue",
            f"arn:aws:secretsmanager:us-east-1:*:secret:/voiceops/{stage}/db-credentials-*",
        ) in granted
        assert ("kms:Decrypt", "*") in granted
    cdk_actions = json.dumps(statements(dev.template("webhook")))
    assert "secretsmanager:GetSecretValue" in cdk_actions and "kms:Decrypt" in cdk_actions


@pytest.fixture(scope="module")
def aws() -> Iterator[FakeAws]:
    fake = FakeAws().start()
    yield fake
    fake.stop()


def test_settings_from_stack_put_zappa_in_the_webhook_vpc_with_its_database(aws: FakeAws, tmp_path: Path) -> None:
    account = provision(aws, "fargate")  # the CDK webhook voiceops-prod-webhook, in the VPC
    done = subprocess.run(
        [str(REPO / "deploy" / "zappa_settings_from_stack.sh"), "prod"],
        cwd=REPO,
        env=cli_env(aws, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    filled = json.loads(done.stdout)
    prod = {**filled["dev"], **filled["prod"]}
    assert prod["vpc_config"] == {"SubnetIds": account.subnets, "SecurityGroupIds": [account.security_group]}
    assert prod["environment_variables"]["DB_HOST"] == "proxy.example"
    assert prod["environment_variables"]["DB_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert filled["dev"]["vpc_config"]["SubnetIds"] == []  # other stages untouched
