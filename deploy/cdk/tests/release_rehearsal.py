"""The release rehearsal: deploy.yml's steps, run for real against a fake AWS account (moto + aws_fake).

`provision()` makes what the stacks would have made (repositories, bucket, cluster, services, task
definitions, the Lambda, stack outputs; App Runner in the fake), straight into moto. `rehearse()` then runs
the `release` job of .github/workflows/deploy.yml: every `run:` step with the real scripts and the AWS CLI,
pointed at the proxy. What cannot run here has a stand-in: `docker` (pushes a manifest with `ecr put-image`),
the webhook zip build (a small zip), and the four `uses:` actions.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from aws_fake import ACCOUNT, REGION, FakeAws
from workflow_runner import JobRun, process_env, run_job

REPO = Path(__file__).resolve().parents[3]
WORKFLOW = REPO / ".github" / "workflows" / "deploy.yml"
STAGE = "prod"
PREFIX = f"voiceops-{STAGE}"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
ARTIFACTS = f"{PREFIX}-artifacts-{ACCOUNT}-{REGION}"
TAG_PARAMETER = f"/voiceops/{STAGE}/release/IMAGE_TAG"
OLD_SHA = "0" * 40
BIN = Path(sys.executable).parent  # the venv with the AWS CLI

DOCKER_STANDIN = """#!/usr/bin/env bash
# docker stand-in: `docker buildx build --file F --tag URI:TAG ... --push .` registers a manifest in ECR.
set -euo pipefail
echo "$*" >>"$DOCKER_LOG"
[ "$1 $2" = "buildx build" ] || { echo "docker stand-in: unsupported: $*" >&2; exit 2; }
tag=""; push=0
while [ $# -gt 0 ]; do
  case "$1" in --tag) tag="$2"; shift ;; --push) push=1 ;; esac
  shift
done
[ "$push" = 1 ] && [ -n "$tag" ]
uri="${tag%:*}"
manifest="$(jq -cn --arg t "$tag" --arg n "$RANDOM$RANDOM" '{schemaVersion: 2,
  mediaType: "application/vnd.docker.distribution.manifest.v2+json",
  config: {mediaType: "application/vnd.docker.container.image.v1+json", size: 1, digest: "sha256:\\($n)"},
  layers: [], annotations: {tag: $t}}')"
aws ecr put-image --repository-name "${uri#*/}" --image-tag "${tag##*:}" --image-manifest "$manifest" >/dev/null
"""

ZIP_STANDIN = """#!/usr/bin/env bash
# build_webhook_zip.sh stand-in (the real one downloads wheels): a small zip at the same path.
set -euo pipefail
mkdir -p "$(dirname "$1")"
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1], "w").writestr("lambda_entry.py", "handler = None")' "$1"
"""

# What `docker push` asks ECR for, beyond the PutImage the stand-in makes, and what the ECR login action
# asks for. https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html
DOCKER_PUSH_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:BatchGetImage",
)


def client(aws: FakeAws, service: str) -> Any:
    """A client straight to moto: set-up and inspection, not recorded as release calls."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=aws.moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class Account:
    web_platform: str
    subnets: list[str]
    security_group: str
    apprunner_arn: str = ""


def _outputs(cfn: Any, stack: str, outputs: dict[str, str]) -> None:
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    cfn.create_stack(StackName=f"VoiceOps-{STAGE}-{stack}", TemplateBody=json.dumps(template))


def provision(
    aws: FakeAws,
    web_platform: str = "fargate",
    *,
    apprunner_fails: bool = False,
    released: bool = True,
    pushed: tuple[str, ...] = (),
) -> Account:
    """A fresh account in the state `cdk deploy --all` leaves it (released at OLD_SHA unless not `released`),
    with images already in ECR for the `pushed` tags."""
    aws.reset()
    ec2, iam, ecr, s3, ecs, lam, cfn = (
        client(aws, name) for name in ("ec2", "iam", "ecr", "s3", "ecs", "lambda", "cloudformation")
    )
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as the CDK VPC has it
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
        for i, az in ((1, "a"), (2, "b"))
    ]
    security_group = ec2.create_security_group(GroupName="release", Description="release", VpcId=vpc)["GroupId"]
    trust = json.dumps(
        {
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ]
        }
    )
    role = {}
    for name in ("bridge-task", "bridge-exec", "web-task", "web-exec", "release-task", "release-exec", "webhook"):
        role[name] = iam.create_role(RoleName=f"{PREFIX}-{name}", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    for name in ("bridge", "web"):
        ecr.create_repository(repositoryName=f"{PREFIX}/{name}", imageTagMutability="IMMUTABLE")
        for tag in pushed:
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": f"sha256:{name}{tag}"},
                "layers": [],
            }
            ecr.put_image(repositoryName=f"{PREFIX}/{name}", imageTag=tag, imageManifest=json.dumps(manifest))
    s3.create_bucket(Bucket=ARTIFACTS)
    ecs.create_cluster(clusterName=PREFIX)
    network = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [security_group]}}
    for name in ("bridge", "web", "release"):
        ecs.register_task_definition(
            family=f"{PREFIX}-{name}",
            taskRoleArn=role[f"{name}-task"],
            executionRoleArn=role[f"{name}-exec"],
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="512",
            memory="1024",
            containerDefinitions=[
                {
                    "name": name,
                    "image": f"{REGISTRY}/{PREFIX}/{'web' if name == 'release' else name}:{OLD_SHA}",
                    "essential": True,
                    "memory": 896,
                    "environment": [{"name": "VOICEOPS_COMPONENT", "value": name}],
                },
                {
                    "name": "otel-collector",
                    "image": "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3",
                    "essential": False,
                    "memory": 128,
                },
            ],
        )
    services = ["bridge"] if web_platform == "apprunner" else ["bridge", "web"]
    for name in services:
        ecs.create_service(
            cluster=PREFIX,
            serviceName=f"{PREFIX}-{name}",
            taskDefinition=f"{PREFIX}-{name}",
            desiredCount=2,
            launchType="FARGATE",
            networkConfiguration=network,
            deploymentConfiguration={
                "minimumHealthyPercent": 100,
                "maximumPercent": 200,
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            },
        )
    lam.create_function(
        FunctionName=f"{PREFIX}-webhook",
        Runtime="python3.13",
        Role=role["webhook"],
        Handler="lambda_entry.handler",
        Code={"ZipFile": _zip({"lambda_entry.py": "handler = None  # old"})},
        VpcConfig={"SubnetIds": subnets, "SecurityGroupIds": [security_group]},
        Environment={"Variables": {"DB_HOST": "proxy.example", "DB_SECRET_ARN": "arn:aws:secretsmanager:x"}},
    )
    if released:
        client(aws, "ssm").put_parameter(Name=TAG_PARAMETER, Type="String", Value=OLD_SHA)
    account = Account(web_platform, subnets, security_group)
    _outputs(
        cfn,
        "Ci",
        {
            "BridgeRepositoryUri": f"{REGISTRY}/{PREFIX}/bridge",
            "WebRepositoryUri": f"{REGISTRY}/{PREFIX}/web",
            "ArtifactBucketName": ARTIFACTS,
        },
    )
    _outputs(cfn, "Bridge", {"ClusterName": PREFIX, "BridgeServiceName": f"{PREFIX}-bridge"})
    _outputs(cfn, "Network", {"ReleaseSecurityGroup": security_group, "ReleaseSubnets": ",".join(subnets)})
    _outputs(cfn, "Webhook", {"WebhookFunctionName": f"{PREFIX}-webhook"})
    web = {"ReleaseTaskFamily": f"{PREFIX}-release"}
    if web_platform == "apprunner":
        account.apprunner_arn = aws.add_apprunner_service(f"{PREFIX}-web", APPRUNNER_SOURCE, fails=apprunner_fails)
        web["WebServiceArn"] = account.apprunner_arn
    else:
        web["WebServiceName"] = f"{PREFIX}-web"
    _outputs(cfn, "Web", web)
    return account


APPRUNNER_SOURCE = {
    "AutoDeploymentsEnabled": False,
    "AuthenticationConfiguration": {"AccessRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-web-apprunner-access"},
    "ImageRepository": {
        "ImageIdentifier": f"{REGISTRY}/{PREFIX}/web:{OLD_SHA}",
        "ImageRepositoryType": "ECR",
        "ImageConfiguration": {
            "Port": "8000",
            "RuntimeEnvironmentVariables": {"VOICEOPS_COMPONENT": "web"},
            "RuntimeEnvironmentSecrets": {"DJANGO_SECRET_KEY": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/x"},
        },
    },
}


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def standins(tmp: Path) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("docker", DOCKER_STANDIN), ("build_webhook_zip.sh", ZIP_STANDIN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def cli_env(aws: FakeAws, tmp: Path) -> dict[str, str]:
    """The environment of a runner step after configure-aws-credentials, pointed at the fake."""
    bin_dir = standins(tmp)
    env = process_env()
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{env.get('PATH', '')}",
        AWS_ENDPOINT_URL=aws.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_PAGER="",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        DOCKER_LOG=str(tmp / "docker.log"),
        POLL_INTERVAL_S="0",  # the fake advances one step per poll
        GITHUB_RUN_ID="4242",
    )
    return env


def rehearse(aws: FakeAws, account: Account, tmp: Path, sha: str) -> JobRun:
    env = cli_env(aws, tmp)

    def ecr_login(step_env: dict[str, str], inputs: dict[str, Any]) -> None:
        # amazon-ecr-login asks ECR for a registry token (then `docker login`, which the stand-in needs not).
        subprocess.run(["aws", "ecr", "get-authorization-token"], env=step_env, check=True, capture_output=True)

    def credentials(step_env: dict[str, str], inputs: dict[str, Any]) -> None:
        assert inputs["role-to-assume"] == "arn:aws:iam::123456789012:role/voiceops-prod-github-deploy"

    return run_job(
        WORKFLOW,
        "release",
        repo=REPO,
        base_env=env,
        variables={
            "AWS_REGION": REGION,
            "AWS_DEPLOY_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-github-deploy",
            **({"WEB_PLATFORM": "apprunner"} if account.web_platform == "apprunner" else {}),
        },
        github={"sha": sha, "run_id": "4242"},
        actions={
            "actions/checkout": lambda e, i: None,
            "aws-actions/configure-aws-credentials": credentials,
            "aws-actions/amazon-ecr-login": ecr_login,
            "docker/setup-buildx-action": lambda e, i: None,
        },
        replace={"deploy/build_webhook_zip.sh": shlex.quote(str(tmp / "bin" / "build_webhook_zip.sh"))},
    )


def docker_pushes(tmp: Path) -> list[str]:
    log = tmp / "docker.log"
    return log.read_text().splitlines() if log.exists() else []


def released_tag(aws: FakeAws) -> str:
    return client(aws, "ssm").get_parameter(Name=TAG_PARAMETER)["Parameter"]["Value"]
