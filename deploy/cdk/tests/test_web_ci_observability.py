"""Web on Fargate (default) or App Runner; the release task; GitHub OIDC; alarms to Slack."""

from __future__ import annotations

from conftest import Synth
from helpers import containers, env_of, only, resources, statements, text
from voiceops_cdk.config import SECRET_NAMES


def test_fargate_web_shares_the_alb_by_host_and_runs_the_release_task(dev: Synth) -> None:
    template = dev.template("web")
    settings = dev.settings
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::ListenerRule",
        {"Conditions": [{"Field": "host-header", "HostHeaderConfig": {"Values": [settings.web_host]}}]},
    )
    only(template, "AWS::ECS::Service")
    assert not resources(template, "AWS::AppRunner::Service")
    tasks = containers(template)
    assert tasks[f"{settings.name_prefix}-release/release"]["Command"] == [
        "python",
        "manage.py",
        "migrate",
        "--noinput",
    ]
    web_env = env_of(tasks[f"{settings.name_prefix}-web/web"])
    assert web_env["VOICEOPS_COMPONENT"] == "web"
    assert web_env["AWS_STORAGE_BUCKET_NAME"] and web_env["AWS_S3_CUSTOM_DOMAIN"]


def test_apprunner_variant_uses_a_vpc_connector_and_secret_references(prod: Synth) -> None:
    template = prod.template("web")
    assert not resources(template, "AWS::ECS::Service")
    service = only(template, "AWS::AppRunner::Service")["Properties"]
    network = service["NetworkConfiguration"]["EgressConfiguration"]
    assert network["EgressType"] == "VPC" and network["VpcConnectorArn"]
    only(template, "AWS::AppRunner::VpcConnector")
    image = service["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]
    secrets = {kv["Name"]: text(kv["Value"]) for kv in image["RuntimeEnvironmentSecrets"]}
    for name in SECRET_NAMES:
        assert f"parameter/voiceops/prod/{name}" in secrets[name]
    plain = {kv["Name"] for kv in image["RuntimeEnvironmentVariables"]}
    assert not set(SECRET_NAMES) & plain
    assert service["HealthCheckConfiguration"]["Path"] == "/healthz"
    # The release task still runs on ECS for migrations and collectstatic.
    assert f"{prod.settings.name_prefix}-release/release" in containers(template)


def test_github_oidc_role_trusts_only_this_repo_and_stage_environment(each: Synth) -> None:
    template = each.template("ci")
    settings = each.settings
    roles = {k: v for k, v in resources(template, "AWS::IAM::Role").items() if k.startswith("GithubDeployRole")}
    assert len(roles) == 1
    role = next(iter(roles.values()))["Properties"]
    statement = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    equals = statement["Condition"]["StringEquals"]
    assert equals["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert equals["token.actions.githubusercontent.com:sub"] == (
        f"repo:{settings.github_repository}:environment:{settings.stage}"
    )
    assert not role.get("ManagedPolicyArns")
    for stmt in statements(template):
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        assert "*" not in actions and not any(a.endswith(":*") for a in actions)
    only(template, "AWS::IAM::OIDCProvider")
    apprunner = "apprunner:UpdateService" in text(statements(template))
    assert apprunner is (settings.web_platform == "apprunner")


def test_ecr_repositories_scan_and_keep_tags_immutable(each: Synth) -> None:
    repos = resources(each.template("ci"), "AWS::ECR::Repository")
    assert len(repos) == 2
    for repo in repos.values():
        assert repo["Properties"]["ImageTagMutability"] == "IMMUTABLE"
        assert repo["Properties"]["ImageScanningConfiguration"] == {"ScanOnPush": True}


EXPECTED_ALARMS = {
    "alb-5xx",
    "bridge-target-5xx",
    "bridge-unhealthy-targets",
    "bridge-errors",
    "webhook-errors",
    "webhook-throttles",
    "rds-cpu",
    "active-calls-near-capacity",
}


def test_alarms_cover_the_list_and_notify_sns(each: Synth) -> None:
    template = each.template("observability")
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    names = {name.removeprefix(f"{each.settings.name_prefix}-") for name in alarms}
    assert names >= EXPECTED_ALARMS
    if each.settings.web_platform == "fargate":
        assert {"web-target-5xx", "web-unhealthy-targets"} <= names
    topic = next(iter(resources(template, "AWS::SNS::Topic")))
    for alarm in alarms.values():
        assert text(alarm["AlarmActions"]).count(topic) == 1
    active = alarms[f"{each.settings.name_prefix}-active-calls-near-capacity"]
    assert active["Namespace"] == "VoiceOps" and active["MetricName"] == "ActiveCalls"
    assert active["Dimensions"] == [{"Name": "Stage", "Value": each.settings.stage}]


def test_slack_through_chatbot_when_configured(dev: Synth, prod: Synth) -> None:
    assert not resources(dev.template("observability"), "AWS::Chatbot::SlackChannelConfiguration")
    slack = only(prod.template("observability"), "AWS::Chatbot::SlackChannelConfiguration")["Properties"]
    assert slack["SlackChannelId"] == "C0123ABCD" and slack["SnsTopicArns"]
