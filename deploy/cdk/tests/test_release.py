"""The release, rehearsed end to end against a fake account (build → push → register → roll → wait → record),
and the deploy role checked against every AWS call the rehearsal made."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk.assertions import Template
from aws_fake import ACCOUNT, REGION, Call, FakeAws
from conftest import Synth
from helpers import resources
from iam_policy import Policy
from release_rehearsal import (
    DOCKER_PUSH_ACTIONS,
    OLD_SHA,
    PREFIX,
    REPO,
    TAG_PARAMETER,
    WORKFLOW,
    Account,
    cli_env,
    client,
    docker_pushes,
    provision,
    rehearse,
    released_tag,
)
from voiceops_cdk.app import build
from voiceops_cdk.ci import release_tag_parameter_name
from workflow_runner import JobRun

SHA_A = "a" * 40


@pytest.fixture(scope="module")
def aws() -> Iterator[FakeAws]:
    fake = FakeAws().start()
    yield fake
    fake.stop()


@dataclass
class Rehearsal:
    """One rehearsal's outcome, captured before the next test resets the fake account."""

    job: JobRun
    calls: list[Call]
    tag: str
    account: Account
    images: dict[str, list[str]]
    bridge_steps: int
    release_commands: list[list[str]]
    lambda_status: str
    running_images: dict[str, str]
    apprunner_source: dict[str, Any]


def capture(aws: FakeAws, account: Account, job: JobRun) -> Rehearsal:
    ecr, ecs = client(aws, "ecr"), client(aws, "ecs")
    images = {
        name: sorted(i["imageTag"] for i in ecr.list_images(repositoryName=f"{PREFIX}/{name}")["imageIds"])
        for name in ("bridge", "web")
    }
    running = {}
    for name in ("bridge", "web"):
        found = ecs.describe_services(cluster=PREFIX, services=[f"{PREFIX}-{name}"])["services"]
        if found:
            taskdef = ecs.describe_task_definition(taskDefinition=found[0]["taskDefinition"])["taskDefinition"]
            running[name] = taskdef["containerDefinitions"][0]["image"]
    rollout = aws.rollouts.get(f"{PREFIX}-bridge")
    return Rehearsal(
        job=job,
        calls=list(aws.calls),
        tag=released_tag(aws),
        account=account,
        images=images,
        bridge_steps=rollout.step if rollout else 0,
        release_commands=list(aws.release_commands),
        lambda_status=client(aws, "lambda").get_function(FunctionName=f"{PREFIX}-webhook")["Configuration"][
            "LastUpdateStatus"
        ],
        running_images=running,
        apprunner_source=aws.apprunner[account.apprunner_arn].source if account.apprunner_arn else {},
    )


@pytest.fixture(scope="module")
def fargate_release(aws: FakeAws, tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    """The first workflow run on a fresh Fargate account: no release-tag parameter yet, and two old bridge
    tasks each still carrying a call (ending at the 4th and 6th poll)."""
    account = provision(aws, "fargate", released=False)
    aws.plan_rollout(f"{PREFIX}-bridge", old_calls_end=[4, 6])
    return capture(aws, account, rehearse(aws, account, tmp_path_factory.mktemp("fargate"), SHA_A))


@pytest.fixture(scope="module")
def apprunner_release(aws: FakeAws, tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    account = provision(aws, "apprunner")
    return capture(aws, account, rehearse(aws, account, tmp_path_factory.mktemp("apprunner"), SHA_A))


def command_seq(calls: list[Call], action: str, predicate: Any = lambda call: True) -> list[int]:
    return [call.seq for call in calls if call.action == action and predicate(call)]


def runs(command: str) -> Any:
    return lambda call: command in json.dumps(call.params.get("overrides", {}))


def updates(service: str) -> Any:
    return lambda call: call.params.get("service") == service


# --- the whole release ------------------------------------------------------------------------------------


def test_release_on_fargate_rolls_everything_and_records_the_tag_last(fargate_release: Rehearsal) -> None:
    run = fargate_release
    assert run.job.ok, run.job.log
    assert run.tag == SHA_A  # the first run created the parameter
    assert run.images == {"bridge": [SHA_A], "web": [SHA_A]}
    for name in ("bridge", "web"):
        assert run.running_images[name].endswith(f"/{PREFIX}/{name}:{SHA_A}")
    assert run.release_commands == [
        ["python", "manage.py", "migrate", "--noinput"],
        ["python", "manage.py", "collectstatic", "--noinput"],
    ]
    assert run.lambda_status == "Successful"

    # Order: migrate, start the bridge roll (not waited for), collectstatic BEFORE the web roll (hashed
    # names must be on S3 before a new web task renders pages that point at them), web, Lambda, then the
    # bridge wait, and the tag last.
    calls = run.calls
    migrate = command_seq(calls, "ecs:RunTask", runs("migrate"))[0]
    bridge_roll = command_seq(calls, "ecs:UpdateService", updates(f"{PREFIX}-bridge"))[0]
    collectstatic = command_seq(calls, "ecs:RunTask", runs("collectstatic"))[0]
    web_roll = command_seq(calls, "ecs:UpdateService", updates(f"{PREFIX}-web"))[0]
    lambda_update = command_seq(calls, "lambda:UpdateFunctionCode")[0]
    record = command_seq(calls, "ssm:PutParameter")
    assert migrate < bridge_roll < collectstatic < web_roll < lambda_update < record[0]
    assert record == [calls[-1].seq]

    # The bridge wait saw the old tasks drain one by one and finished only after the last live call ended.
    wait = run.job.step("Wait for the bridge deployment").output
    assert "old: 2 task(s) still draining their calls" in wait
    assert "old: 1 task(s) still draining their calls" in wait
    assert f"deployment of arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{PREFIX}-bridge:2 completed" in wait
    assert run.bridge_steps >= 6


def test_release_on_app_runner_deploys_the_full_source_configuration(apprunner_release: Rehearsal) -> None:
    run = apprunner_release
    assert run.job.ok, run.job.log
    assert run.tag == SHA_A
    assert run.job.step("Roll the web service (ECS)").skipped
    source = run.apprunner_source
    assert source["ImageRepository"]["ImageIdentifier"].endswith(f"/{PREFIX}/web:{SHA_A}")
    # UpdateService replaces the source configuration: the port, environment, secrets and access role
    # that CDK set must survive the release.
    image = source["ImageRepository"]["ImageConfiguration"]
    assert image["RuntimeEnvironmentSecrets"] and image["RuntimeEnvironmentVariables"] and image["Port"]
    assert source["AuthenticationConfiguration"]["AccessRoleArn"]


# --- rolled back: the workflow fails and records nothing ------------------------------------------------------


def test_bridge_rolled_back_by_the_circuit_breaker_fails_and_records_nothing(aws: FakeAws, tmp_path: Path) -> None:
    account = provision(aws, "fargate")
    aws.plan_rollout(f"{PREFIX}-bridge", fails=True)
    job = rehearse(aws, account, tmp_path, SHA_A)
    assert not job.ok
    failed = job.step("Wait for the bridge deployment")
    assert failed.returncode != 0
    assert "ECS rolled the deployment back: ECS deployment circuit breaker" in failed.output
    assert job.step("Record the release").skipped
    assert released_tag(aws) == OLD_SHA
    assert not command_seq(aws.calls, "ssm:PutParameter")


def test_app_runner_rollback_fails_and_records_nothing(aws: FakeAws, tmp_path: Path) -> None:
    account = provision(aws, "apprunner", apprunner_fails=True)
    job = rehearse(aws, account, tmp_path, SHA_A)
    assert not job.ok
    assert "ended ROLLBACK_SUCCEEDED" in job.step("Deploy the web service (App Runner)").output
    assert job.step("Record the release").skipped
    assert released_tag(aws) == OLD_SHA


def test_wait_fails_when_the_rollback_finished_before_the_first_poll(aws: FakeAws, tmp_path: Path) -> None:
    """`services-stable` passes here (one COMPLETED deployment, all tasks running): the old task definition."""
    provision(aws, "fargate")
    aws.plan_rollout(f"{PREFIX}-bridge", fails=True)
    env = cli_env(aws, tmp_path) | {"CLUSTER": PREFIX, "SERVICE": f"{PREFIX}-bridge", "CONTAINER": "bridge"}
    rolled = _script("roll_ecs_service.sh", env | {"IMAGE": f"x/{PREFIX}/bridge:{SHA_A}"})
    new_taskdef = rolled.stdout.splitlines()[-1]
    for _ in range(3):  # the circuit breaker trips and the rollback completes while nobody looks
        subprocess.run(
            ["aws", "ecs", "describe-services", "--cluster", PREFIX, "--services", f"{PREFIX}-bridge"],
            env=env,
            check=True,
            capture_output=True,
        )
    stable = subprocess.run(
        ["aws", "ecs", "wait", "services-stable", "--cluster", PREFIX, "--services", f"{PREFIX}-bridge"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stable.returncode == 0, "services-stable is fooled by the rollback (the defect this guards against)"
    waited = _script("wait_ecs_deployment.sh", env | {"TASK_DEFINITION": new_taskdef, "TIMEOUT_S": "60"}, check=False)
    assert waited.returncode == 1
    assert "rolled back or replaced" in waited.stderr


def _script(name: str, env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(REPO / "deploy" / name)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


# --- the bridge wait: bounded, with progress ---------------------------------------------------------------------


def test_bridge_wait_reports_progress_and_gives_up_at_its_bound(aws: FakeAws, tmp_path: Path) -> None:
    provision(aws, "fargate")
    aws.plan_rollout(f"{PREFIX}-bridge", old_calls_end=[10**6, 10**6])  # calls that never end
    env = cli_env(aws, tmp_path) | {"CLUSTER": PREFIX, "SERVICE": f"{PREFIX}-bridge", "CONTAINER": "bridge"}
    rolled = _script("roll_ecs_service.sh", env | {"IMAGE": f"x/{PREFIX}/bridge:{SHA_A}"})
    waited = _script(
        "wait_ecs_deployment.sh",
        env | {"TASK_DEFINITION": rolled.stdout.splitlines()[-1], "TIMEOUT_S": "1", "POLL_INTERVAL_S": "1"},
        check=False,
    )
    assert waited.returncode == 1
    assert "new: 2/2 running, 0 pending, rollout IN_PROGRESS; old: 2 task(s) still draining" in waited.stdout
    assert "did not finish within 0m01s" in waited.stderr


def test_deploy_job_outlasts_the_longest_call(prod: Synth) -> None:
    """The bridge wait covers a full-length call plus a margin; the job and its AWS session cover the wait."""
    spec = yaml.safe_load(WORKFLOW.read_text())
    job = spec["jobs"]["release"]
    wait_s = int(spec["env"]["BRIDGE_WAIT_S"])
    longest_call_s = 3600  # OpenAI Realtime sessions end at 60 min (shared/PROTOCOLS.md)
    delay = max(
        int(attr["Value"])
        for tg in resources(prod.template("bridge"), "AWS::ElasticLoadBalancingV2::TargetGroup").values()
        for attr in tg["Properties"].get("TargetGroupAttributes", [])
        if attr["Key"] == "deregistration_delay.timeout_seconds"
    )
    assert wait_s >= max(longest_call_s, delay) + 600
    steps = {step.get("name", ""): step for step in job["steps"]}
    bridge_wait = steps["Wait for the bridge deployment (old tasks drain their live calls)"]
    assert bridge_wait["env"]["TIMEOUT_S"] == "${{ env.BRIDGE_WAIT_S }}"
    assert job["timeout-minutes"] * 60 >= wait_s + 20 * 60  # build, migrate, web and Lambda before it
    credentials = next(s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws"))
    session_s = int(credentials["with"]["role-duration-seconds"])
    assert session_s >= job["timeout-minutes"] * 60
    role = next(
        r for k, r in resources(prod.template("ci"), "AWS::IAM::Role").items() if k.startswith("GithubDeployRole")
    )
    assert role["Properties"]["MaxSessionDuration"] >= session_s
    assert "services-stable" not in WORKFLOW.read_text()


# --- re-runs and rollbacks to an earlier commit -------------------------------------------------------------------


def test_rerun_or_rollback_to_an_earlier_commit_reuses_the_pushed_images(aws: FakeAws, tmp_path: Path) -> None:
    """Tags are immutable, so a second push of a SHA fails: a re-run of a release, or deploying an earlier
    commit again (the documented rollback), must reuse what is in ECR. (The first push: fargate_release.)"""
    account = provision(aws, "fargate", pushed=(OLD_SHA,))
    client(aws, "ssm").put_parameter(Name=TAG_PARAMETER, Type="String", Value=SHA_A, Overwrite=True)
    job = rehearse(aws, account, tmp_path, OLD_SHA)
    assert job.ok, job.log
    assert released_tag(aws) == OLD_SHA
    assert not docker_pushes(tmp_path)
    for image in ("bridge", "web"):
        assert "is already in ECR" in job.step(f"Build and push the {image} image").output


def test_push_fails_on_errors_other_than_a_missing_tag(aws: FakeAws, tmp_path: Path) -> None:
    provision(aws, "fargate")
    env = cli_env(aws, tmp_path) | {
        "REPOSITORY_URI": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/no-such-repository",
        "TAG": SHA_A,
        "DOCKERFILE": "deploy/Dockerfile.web",
    }
    done = _script("push_image.sh", env, check=False)
    assert done.returncode == 1 and "RepositoryNotFoundException" in done.stderr
    assert not docker_pushes(tmp_path)


# --- every call the release makes is allowed by the deploy role -------------------------------------------------


@pytest.fixture(scope="module")
def prod_fargate_ci() -> dict[str, Any]:
    return Template.from_stack(build({"stage": "prod", "domain": "voice.example.com"}, nag=False).ci).to_json()


@pytest.mark.parametrize("platform", ["fargate", "apprunner"])
def test_deploy_role_allows_every_call_of_the_release(
    platform: str, request: pytest.FixtureRequest, prod: Synth, prod_fargate_ci: dict[str, Any]
) -> None:
    run: Rehearsal = request.getfixturevalue(f"{platform}_release")
    assert run.job.ok, run.job.log
    template = prod.template("ci").to_json() if platform == "apprunner" else prod_fargate_ci
    policy = Policy.of_role(template, "GithubDeployRole", ACCOUNT, REGION)
    calls = list(run.calls)
    # docker push asks ECR for more than the PutImage its stand-in makes.
    for repo in ("bridge", "web"):
        resource = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{PREFIX}/{repo}"
        calls += [Call(-1, action, resource, {}) for action in DOCKER_PUSH_ACTIONS]
    denied = sorted({(c.action, c.resource) for c in calls if not policy.allows(c.action, c.resource, c.context)})
    assert not denied, f"the deploy role would refuse: {denied}"
    actions = {call.action for call in calls}
    assert {"lambda:UpdateFunctionCode", "s3:GetObject", "ecr:DescribeImages", "ssm:PutParameter"} <= actions


def test_deploy_role_refuses_what_the_release_does_not_need(prod_fargate_ci: dict[str, Any]) -> None:
    """The evaluator is not a pushover: other stages' and other services' resources are denied."""
    policy = Policy.of_role(prod_fargate_ci, "GithubDeployRole", ACCOUNT, REGION)
    assert policy.allows("s3:GetObject", f"arn:aws:s3:::voiceops-prod-artifacts-{ACCOUNT}-{REGION}/webhook/x.zip")
    assert not policy.allows("s3:GetObject", f"arn:aws:s3:::voiceops-prod-static-{ACCOUNT}-{REGION}/x")
    assert not policy.allows(
        "ecs:UpdateService", f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/voiceops-dev/voiceops-dev-web"
    )
    assert not policy.allows(
        "ssm:PutParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/voiceops/prod/OPENAI_API_KEY"
    )
    role = f"arn:aws:iam::{ACCOUNT}:role/voiceops-prod-web-task"
    assert policy.allows("iam:PassRole", role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    assert not policy.allows("iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})


# --- the release tag belongs to the release, not to CloudFormation ------------------------------------------------


def test_no_stack_owns_the_release_tag_so_an_update_cannot_reset_it(each: Synth) -> None:
    """CloudFormation writes a resource's template value on every update of that resource, so a stack that
    owns the parameter puts its placeholder back. The stacks only read it (an SSM parameter type)."""
    name = release_tag_parameter_name(each.settings)
    readers = 0
    for stack in each.voiceops.stacks.values():
        template = Template.from_stack(stack).to_json()
        for resource in template.get("Resources", {}).values():
            assert not (resource["Type"] == "AWS::SSM::Parameter" and resource["Properties"].get("Name") == name)
        for parameter in template.get("Parameters", {}).values():
            if parameter.get("Default") == name:
                assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
                readers += 1
    assert readers >= 2  # bridge and web (and the webhook's zip key)


# --- one-off commands through the release task ----------------------------------------------------------------------


def test_release_task_passes_named_variables_to_the_command(aws: FakeAws, tmp_path: Path) -> None:
    """How docs/deploy.md creates the first staff user: createsuperuser --noinput with DJANGO_SUPERUSER_*."""
    account = provision(aws, "fargate")
    env = cli_env(aws, tmp_path) | {
        "CLUSTER": PREFIX,
        "FAMILY": f"{PREFIX}-release",
        "SUBNETS": ",".join(account.subnets),
        "SG": account.security_group,
        "IMAGE": f"x/{PREFIX}/web:{SHA_A}",
        "PASS_ENV": "DJANGO_SUPERUSER_USERNAME DJANGO_SUPERUSER_EMAIL DJANGO_SUPERUSER_PASSWORD",
        "DJANGO_SUPERUSER_USERNAME": "admin",
        "DJANGO_SUPERUSER_EMAIL": "ops@example.com",
        "DJANGO_SUPERUSER_PASSWORD": "one-time 'quoted' pass",
    }
    done = subprocess.run(
        [str(REPO / "deploy" / "run_release_task.sh"), "python", "manage.py", "createsuperuser", "--noinput"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert aws.release_commands == [["python", "manage.py", "createsuperuser", "--noinput"]]
    assert aws.release_environments[0]["DJANGO_SUPERUSER_PASSWORD"] == "one-time 'quoted' pass"
    assert "one-time" not in done.stdout + done.stderr
    aws.release_exit_codes.append(1)
    failed = subprocess.run(
        [str(REPO / "deploy" / "run_release_task.sh"), "python", "manage.py", "migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode != 0 and "exited with 1" in failed.stdout
