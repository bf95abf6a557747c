"""The bridge on Fargate behind the ALB: long calls, draining, health, autoscaling, task protection."""

from __future__ import annotations

from aws_cdk.assertions import Match
from conftest import Synth
from helpers import containers, env_of, only, resources, statements, text
from voiceops_cdk.app import build
from voiceops_cdk.config import SECRET_NAMES


def _alb_attributes(template) -> dict[str, str]:
    alb = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    return {a["Key"]: a["Value"] for a in alb["Properties"]["LoadBalancerAttributes"]}


def test_alb_is_public_https_with_a_long_idle_timeout_and_access_logs(each: Synth) -> None:
    template = each.template("bridge")
    attributes = _alb_attributes(template)
    assert int(attributes["idle_timeout.timeout_seconds"]) >= 3600  # a Realtime session lasts up to 60 min
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    listener = only(template, "AWS::ElasticLoadBalancingV2::Listener")["Properties"]
    assert listener["Protocol"] == "HTTPS" and listener["Port"] == 443
    assert listener["Certificates"], "the HTTPS listener needs an ACM certificate"
    template.has_resource_properties(
        "AWS::CertificateManager::Certificate",
        {"DomainName": each.settings.bridge_host, "ValidationMethod": "DNS"},
    )


def test_bridge_route_health_check_and_drain_numbers_match(each: Synth) -> None:
    template = each.template("bridge")
    settings = each.settings
    target_group = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")["Properties"]
    assert target_group["TargetType"] == "ip"
    attributes = {a["Key"]: a["Value"] for a in target_group["TargetGroupAttributes"]}
    bridge = containers(template)[f"{settings.name_prefix}-bridge/bridge"]
    assert int(env_of(bridge)["DRAIN_TIMEOUT_S"]) == settings.drain_timeout_s == 110
    assert bridge["StopTimeout"] == settings.drain_timeout_s + 10 == 120
    # Deregistration drains calls (the ALB's maximum); SIGTERM comes after it, so the two are not tied.
    assert int(attributes["deregistration_delay.timeout_seconds"]) == 3600


def test_bridge_host_forwards_only_the_media_stream_and_health_paths(each: Synth) -> None:
    """Issue 7 item 11: bridge.<domain> served the whole URLconf, /admin and /dashboard included."""
    template = each.template("bridge")
    host = each.settings.bridge_host
    rules = [
        r["Properties"]
        for r in resources(template, "AWS::ElasticLoadBalancingV2::ListenerRule").values()
        if any(c.get("HostHeaderConfig", {}).get("Values") == [host] for c in r["Properties"]["Conditions"])
    ]
    assert len(rules) == 1
    conditions = {c["Field"]: c for c in rules[0]["Conditions"]}
    assert set(conditions) == {"host-header", "path-pattern"}
    assert sorted(conditions["path-pattern"]["PathPatternConfig"]["Values"]) == ["/healthz", "/media-stream", "/readyz"]
    assert rules[0]["Actions"][0]["Type"] == "forward"
    # Everything else on that host falls to the listener's default: a fixed 404.
    listener = only(template, "AWS::ElasticLoadBalancingV2::Listener")["Properties"]
    assert listener["DefaultActions"][0]["FixedResponseConfig"]["StatusCode"] == "404"


def test_alb_and_container_health_checks_are_liveness_not_dependencies(each: Synth) -> None:
    """Issue 7 item 8: /readyz fails while the database or Redis is down; as the ALB health check it made ECS
    replace every task carrying calls during a failover. The check that replaces tasks is /healthz."""
    template = each.template("bridge")
    target_group = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")["Properties"]
    assert target_group["HealthCheckPath"] == "/healthz"
    bridge = containers(template)[f"{each.settings.name_prefix}-bridge/bridge"]
    assert "/healthz" in " ".join(bridge["HealthCheck"]["Command"])


def test_drain_timeout_context_moves_stop_timeout_not_the_deregistration_delay() -> None:
    voiceops = build({"stage": "dev", "drain_timeout_s": 60}, nag=False)
    from aws_cdk.assertions import Template

    template = Template.from_stack(voiceops.bridge)
    bridge = containers(template)["voiceops-dev-bridge/bridge"]
    assert bridge["StopTimeout"] == 70
    assert env_of(bridge)["DRAIN_TIMEOUT_S"] == "60"
    target_group = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")["Properties"]
    attributes = {a["Key"]: a["Value"] for a in target_group["TargetGroupAttributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == "3600"


def test_deployments_start_new_tasks_first_and_roll_back_on_failure(each: Synth) -> None:
    service = only(each.template("bridge"), "AWS::ECS::Service")["Properties"]
    config = service["DeploymentConfiguration"]
    assert config["MinimumHealthyPercent"] == 100 and config["MaximumPercent"] == 200
    assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["LaunchType"] == "FARGATE"
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"


def test_autoscaling_tracks_cpu_memory_and_active_calls(each: Synth) -> None:
    template = each.template("bridge")
    target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")["Properties"]
    assert target["MinCapacity"] == each.settings.bridge_min_tasks
    assert target["MaxCapacity"] == each.settings.bridge_max_tasks
    policies = [p["Properties"] for p in resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy").values()]
    assert all(p["PolicyType"] == "TargetTrackingScaling" for p in policies)
    predefined = {
        p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"]
        for p in policies
        if "PredefinedMetricSpecification" in p["TargetTrackingScalingPolicyConfiguration"]
    }
    assert predefined == {"ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization"}
    custom = [
        p["TargetTrackingScalingPolicyConfiguration"]
        for p in policies
        if "CustomizedMetricSpecification" in p["TargetTrackingScalingPolicyConfiguration"]
    ]
    assert len(custom) == 1
    metric = custom[0]["CustomizedMetricSpecification"]
    assert metric["Namespace"] == "VoiceOps" and metric["MetricName"] == "ActiveCalls"
    assert metric["Dimensions"] == [{"Name": "Stage", "Value": each.settings.stage}]
    assert custom[0]["TargetValue"] == each.settings.active_calls_target
    # docs/perf.md measured 79 calls on a 1 vCPU / 2 GB task: scaling aims at 60 % of that.
    assert each.settings.calls_per_task == 79 and custom[0]["TargetValue"] == 47


def test_task_does_not_protect_itself_and_publishes_its_metric(each: Synth) -> None:
    """Task scale-in protection held while calls are live blocked deployments (tests/test_drain_model.py)."""
    found = text(statements(each.template("bridge")))
    assert "TaskProtection" not in found
    assert '"cloudwatch:namespace": ["VoiceOps"' in found


def test_secrets_come_from_ssm_and_secrets_manager_never_plain_environment(each: Synth) -> None:
    settings = each.settings
    bridge = containers(each.template("bridge"))[f"{settings.name_prefix}-bridge/bridge"]
    secrets = {s["Name"]: text(s["ValueFrom"]) for s in bridge["Secrets"]}
    for name in SECRET_NAMES:
        assert f"parameter/voiceops/{settings.stage}/{name}" in secrets[name]
    assert {"DB_USER", "DB_PASSWORD"} <= secrets.keys()
    plain = env_of(bridge)
    assert not set(SECRET_NAMES) & plain.keys()
    assert "DATABASE_URL" not in plain and "DB_PASSWORD" not in plain


def test_adot_collector_sidecar_and_log_retention(each: Synth) -> None:
    template = each.template("bridge")
    sidecar = containers(template)[f"{each.settings.name_prefix}-bridge/otel-collector"]
    assert "aws-otel-collector" in sidecar["Image"] and sidecar["Essential"] is False
    bridge = containers(template)[f"{each.settings.name_prefix}-bridge/bridge"]
    assert env_of(bridge)["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://127.0.0.1:4317")
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": Match.any_value()})
    assert text(statements(template)).count("xray:PutTraceSegments") >= 1


def test_image_tag_is_resolved_from_ssm_at_deploy_time_not_synth(each: Synth) -> None:
    template = each.template("bridge").to_json()
    parameter = template["Parameters"]["ReleaseTagValue"]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert parameter["Default"] == f"/voiceops/{each.settings.stage}/release/IMAGE_TAG"
