"""Web on Fargate (default) or App Runner; the release task; GitHub OIDC; alarms to Slack."""

from __future__ import annotations

import json
import re

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
    # Issue 7 item 12: failures the list above missed.
    "api-5xx",
    "api-latency",
    "bridge-running-below-desired",
    "rds-free-storage",
    "rds-connections",
    "redis-cpu-001",
    "redis-memory-001",
    "redis-evictions-001",
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


def test_apprunner_admin_host_points_at_app_runner_not_the_alb(prod: Synth) -> None:
    """Issue 7 item 16: with web_platform=apprunner, admin.<domain> was an alias of the ALB (which has no
    admin service then). It is an App Runner custom domain, CNAME'd to the DNS target App Runner returns."""
    host = prod.settings.web_host
    bridge_records = resources(prod.template("bridge"), "AWS::Route53::RecordSet").values()
    assert f"{host}." not in [r["Properties"]["Name"] for r in bridge_records]
    web = prod.template("web")
    [association] = resources(web, "Custom::AWS").values()
    create = text(association["Properties"]["Create"])
    assert "associateCustomDomain" in create and host in create and "WebService" in create
    assert "disassociateCustomDomain" in text(association["Properties"]["Delete"])
    [record] = [r["Properties"] for r in resources(web, "AWS::Route53::RecordSet").values()]
    assert record["Name"] == f"{host}." and record["Type"] == "CNAME"
    assert "DNSTarget" in text(record["ResourceRecords"])


def test_fargate_admin_host_is_on_the_alb(dev: Synth) -> None:
    from aws_cdk.assertions import Template
    from voiceops_cdk.app import build

    zone = {"hosted_zone_id": "Z0123456789ABCDEFGHIJ", "hosted_zone_name": "dev.voice.example.com"}
    bridge = Template.from_stack(build({"stage": "dev", "domain": "dev.voice.example.com", **zone}, nag=False).bridge)
    names = [r["Properties"]["Name"] for r in resources(bridge, "AWS::Route53::RecordSet").values()]
    assert sorted(names) == ["admin.dev.voice.example.com.", "bridge.dev.voice.example.com."]
    assert not resources(dev.template("web"), "Custom::AWS")


def test_apprunner_tracing_is_really_on(prod: Synth) -> None:
    """Issue 7 item 16: the observability configuration was there, but the app only traces when
    OTEL_EXPORTER_OTLP_ENDPOINT is set (calls.tracing) and the variant removed it; App Runner's collector
    listens on localhost:4317 (https://docs.aws.amazon.com/apprunner/latest/dg/monitor-xray.html)."""
    template = prod.template("web")
    service = only(template, "AWS::AppRunner::Service")["Properties"]
    assert service["ObservabilityConfiguration"]["ObservabilityEnabled"] is True
    config = only(template, "AWS::AppRunner::ObservabilityConfiguration")["Properties"]
    assert config["TraceConfiguration"] == {"Vendor": "AWSXRAY"}
    image = service["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]
    env = {kv["Name"]: kv["Value"] for kv in image["RuntimeEnvironmentVariables"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] in ("http://127.0.0.1:4317", "http://localhost:4317")
    assert "xray" in env["OTEL_PROPAGATORS"]
    instance_role = service["InstanceConfiguration"]["InstanceRoleArn"]["Fn::GetAtt"][0]
    granted = [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": instance_role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert "xray:PutTraceSegments" in text(granted)


def _alarms(synth: Synth) -> dict[str, dict]:
    found = resources(synth.template("observability"), "AWS::CloudWatch::Alarm").values()
    return {a["Properties"]["AlarmName"].removeprefix(f"{synth.settings.name_prefix}-"): a["Properties"] for a in found}


def test_alarms_catch_webhook_500s_missing_tasks_redis_and_rds_limits(each: Synth) -> None:
    """Issue 7 item 12. Mangum turns a Django exception into a 500 response, a successful invocation
    (Lambda Errors stays 0): API Gateway's 5xx and latency see it."""
    alarms = _alarms(each)
    api_5xx = alarms["api-5xx"]
    assert (api_5xx["Namespace"], api_5xx["MetricName"]) == ("AWS/ApiGateway", "5xx")
    dimensions = {d["Name"]: d["Value"] for d in api_5xx["Dimensions"]}
    assert dimensions["Stage"] == "$default" and "webhookapiid" in text(dimensions["ApiId"]).lower()
    assert alarms["api-latency"]["ExtendedStatistic"] == "p90"
    for kind in ["bridge", "web"] if each.settings.web_platform == "fargate" else ["bridge"]:
        missing = alarms[f"{kind}-running-below-desired"]
        metrics = {m["Id"]: m for m in missing["Metrics"]}
        assert metrics[next(i for i, m in metrics.items() if "Expression" in m)]["Expression"] == "desired - running"
        names = {m["MetricStat"]["Metric"]["MetricName"] for m in metrics.values() if "MetricStat" in m}
        assert names == {"DesiredTaskCount", "RunningTaskCount"}
        assert f"-{kind}" in text(missing["Metrics"])
    nodes = ["001", "002"] if each.settings.is_prod else ["001"]
    for node in nodes:
        assert alarms[f"redis-memory-{node}"]["MetricName"] == "DatabaseMemoryUsagePercentage"
        assert alarms[f"redis-evictions-{node}"]["MetricName"] == "Evictions"
        [dimension] = alarms[f"redis-cpu-{node}"]["Dimensions"]
        separator, (group, suffix) = dimension["Value"]["Fn::Join"]  # <replication group id>-<node>
        assert (dimension["Name"], separator, suffix) == ("CacheClusterId", "-", node)
        assert "redisreplicationgroupid" in text(group).lower()
    storage = alarms["rds-free-storage"]
    assert storage["MetricName"] == "FreeStorageSpace" and storage["ComparisonOperator"].startswith("LessThan")
    assert alarms["rds-connections"]["MetricName"] == "DatabaseConnections"


def test_alarms_without_slack_or_email_warn_at_synth(dev: Synth, prod: Synth) -> None:
    from aws_cdk.assertions import Annotations, Match

    warning = Match.string_like_regexp("reach nobody")
    Annotations.from_stack(dev.voiceops.observability).has_warning("*", warning)
    Annotations.from_stack(prod.voiceops.observability).has_no_warning("*", warning)  # prod has Slack


def test_call_alarms_watch_what_the_bridge_publishes(each: Synth) -> None:
    """Issue 9 §1: upstream errors, calls they ended, a slow first answer and failing tools page, on the
    namespace, names and dimensions the bridge's EMF lines carry (voiceops_cdk.metric_names)."""
    alarms = _alarms(each)
    stage = {"Name": "Stage", "Value": each.settings.stage}
    expected = {
        "upstream-errors": ("UpstreamErrors", [stage], "Sum"),
        "calls-ended-by-upstream-error": ("CallsEnded", [stage, {"Name": "EndReason", "Value": "upstream_error"}],
                                          "Sum"),
        "first-agent-audio-slow": ("TimeToFirstAgentAudioMs", [stage], "p90"),
        "tool-errors": ("ToolErrors", [stage], "Sum"),
    }
    for name, (metric, dimensions, statistic) in expected.items():
        alarm = alarms[name]
        assert alarm["Namespace"] == "VoiceOps" and alarm["MetricName"] == metric
        assert sorted(alarm["Dimensions"], key=lambda d: d["Name"]) == sorted(dimensions, key=lambda d: d["Name"])
        assert alarm.get("Statistic", alarm.get("ExtendedStatistic")) == statistic
        assert alarm["TreatMissingData"] == "notBreaching"  # no calls, no data: not an outage
    assert alarms["first-agent-audio-slow"]["Threshold"] == 3000
    assert alarms["first-agent-audio-slow"]["EvaluationPeriods"] == 3


def test_calls_dashboard_shows_every_call_metric(each: Synth) -> None:
    dashboard = only(each.template("observability"), "AWS::CloudWatch::Dashboard")["Properties"]
    assert dashboard["DashboardName"] == f"{each.settings.name_prefix}-calls"
    body = json.loads(body_text(dashboard["DashboardBody"]))
    shown: set[str] = set()
    searched: set[tuple[str, str]] = set()
    for widget in body["widgets"]:
        for line in widget["properties"].get("metrics", []):
            if isinstance(line[-1], dict) and "expression" in line[-1]:
                found = re.search(r"\{VoiceOps,Stage,(\w+)\} MetricName=\"(\w+)\" Stage=\"(\w+)\"",
                                  line[-1]["expression"])
                assert found and found[3] == each.settings.stage, line
                searched.add((found[2], found[1]))
            else:
                namespace, metric, *rest = [part for part in line if not isinstance(part, dict)]
                assert namespace == "VoiceOps" and rest == ["Stage", each.settings.stage], line
                shown.add(metric)
    assert shown == {
        "ActiveCalls", "CallsStarted", "CallsEnded", "TimeToFirstAgentAudioMs", "ReplyLatencyMs", "UpstreamErrors",
        "BargeIns", "ToolErrors", "ToolLatencyMs", "WebhookCallsReceived", "WebhookSignatureFailures",
        "WebhookErrors",
    }
    assert searched == {("CallsEnded", "EndReason"), ("OpenAIConnectMs", "Engine"), ("FramesDropped", "Direction")}
    assert any(widget["type"] == "alarm" for widget in body["widgets"])


def body_text(body: object) -> str:
    """The dashboard body is an Fn::Join of literal strings and the region/alarm ARNs: keep the literals, put
    a placeholder string for the rest."""
    if isinstance(body, str):
        return body
    parts = body["Fn::Join"][1]  # type: ignore[index]
    return "".join(part if isinstance(part, str) else "x" for part in parts)
