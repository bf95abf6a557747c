"""API Gateway HTTP API ($default stage, custom domain) + Python 3.13 Lambda for /twilio/*."""

from __future__ import annotations

from conftest import Synth
from helpers import only, resources, statements, text
from voiceops_cdk.config import SECRET_NAMES


def test_lambda_runtime_cost_cap_tracing_and_vpc(each: Synth) -> None:
    template = each.template("webhook")
    function = only(template, "AWS::Lambda::Function")["Properties"]
    assert function["Runtime"] == "python3.13"
    assert function["Handler"] == "lambda_entry.handler"
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["VpcConfig"]["SubnetIds"]
    env = function["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/otel-instrument"
    assert "AWSOpenTelemetryDistroPython" in text(function["Layers"])
    assert env["VOICEOPS_SSM_PREFIX"] == f"/voiceops/{each.settings.stage}/"
    assert env["PUBLIC_WEBHOOK_BASE_URL"] == f"https://{each.settings.api_host}"
    assert "webhook/" in text(function["Code"]) and "ReleaseTagValue" in text(function["Code"])


def test_no_secret_in_the_lambda_environment_and_ssm_read_is_scoped(each: Synth) -> None:
    template = each.template("webhook")
    env = only(template, "AWS::Lambda::Function")["Properties"]["Environment"]["Variables"]
    assert not set(SECRET_NAMES) & env.keys()
    assert "DATABASE_URL" not in env and "DB_PASSWORD" not in env
    found = text(statements(template))
    assert "ssm:GetParametersByPath" in found
    assert f"parameter/voiceops/{each.settings.stage}/*" in found


def test_log_groups_have_retention(each: Synth) -> None:
    for group in resources(each.template("webhook"), "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] > 0


def test_http_api_default_stage_routes_and_custom_domain(each: Synth) -> None:
    template = each.template("webhook")
    api = only(template, "AWS::ApiGatewayV2::Api")["Properties"]
    assert api["ProtocolType"] == "HTTP"
    assert api["DisableExecuteApiEndpoint"] is True  # one public URL: the one Twilio signs
    stage = only(template, "AWS::ApiGatewayV2::Stage")["Properties"]
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True
    assert stage["AccessLogSettings"]["DestinationArn"]
    routes = {r["Properties"]["RouteKey"] for r in resources(template, "AWS::ApiGatewayV2::Route").values()}
    assert routes == {"POST /twilio/voice", "POST /twilio/status", "POST /twilio/stream-ended",
                      "POST /twilio/outbound", "POST /twilio/amd", "POST /twilio/whisper",
                      "POST /twilio/transfer-ended"}
    domain = only(template, "AWS::ApiGatewayV2::DomainName")["Properties"]
    assert domain["DomainName"] == each.settings.api_host
    mapping = only(template, "AWS::ApiGatewayV2::ApiMapping")["Properties"]
    assert "ApiMappingKey" not in mapping  # mapped at the root: no path prefix in the signed URL
    outputs = template.to_json()["Outputs"]
    assert outputs["TwilioVoiceWebhookUrl"]["Value"] == f"https://{each.settings.api_host}/twilio/voice"


def test_dns_record_only_when_a_zone_is_given(dev: Synth, prod: Synth) -> None:
    assert not resources(dev.template("webhook"), "AWS::Route53::RecordSet")
    assert len(resources(prod.template("webhook"), "AWS::Route53::RecordSet")) == 1


def _layers(context: dict) -> str:
    from aws_cdk.assertions import Template
    from voiceops_cdk.app import build

    function = only(Template.from_stack(build(context, nag=False).webhook), "AWS::Lambda::Function")
    return text(function["Properties"]["Layers"])


def test_adot_layer_arn_is_the_one_aws_publishes_in_the_region() -> None:
    """Issue 7 item 15: the layer's account and version differ by region (AWS's ADOT Lambda layer list,
    https://aws-otel.github.io/docs/getting-started/lambda/lambda-python)."""
    assert _layers({"region": "us-east-1"}) == (
        '["arn:aws:lambda:us-east-1:615299751070:layer:AWSOpenTelemetryDistroPython:25"]'
    )
    # Milan: another publishing account, another version.
    assert _layers({"region": "eu-south-1"}) == (
        '["arn:aws:lambda:eu-south-1:257394471194:layer:AWSOpenTelemetryDistroPython:19"]'
    )
    pinned = "arn:aws:lambda:eu-south-1:257394471194:layer:AWSOpenTelemetryDistroPython:18"
    assert _layers({"region": "eu-south-1", "adot_lambda_layer_arn": pinned}) == f'["{pinned}"]'


def test_unknown_region_for_the_adot_layer_fails_synth_with_what_to_do() -> None:
    import pytest
    from voiceops_cdk.app import build

    with pytest.raises(ValueError, match="adot_lambda_layer_arn"):
        build({"region": "us-gov-west-1"}, nag=False)
    build({"region": "us-gov-west-1", "adot_lambda_layer_arn": "arn:aws-us-gov:lambda:us-gov-west-1:1:layer:x:1"},
          nag=False)


def test_cost_cap_is_stage_throttling_not_reserved_concurrency_by_default(each: Synth) -> None:
    """Issue 7 item 2. New accounts have a Lambda concurrency quota of 10, and Lambda keeps at least that
    many unreserved ("Specified ReservedConcurrentExecutions for function decreases account's
    UnreservedConcurrentExecution below its minimum value of [10]"; AWS Lambda quotas and
    PutFunctionConcurrency: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html), so
    any reservation fails there. The default cap is the HTTP API stage's throttle (429 above it)."""
    template = each.template("webhook")
    function = only(template, "AWS::Lambda::Function")["Properties"]
    assert "ReservedConcurrentExecutions" not in function
    route_settings = only(template, "AWS::ApiGatewayV2::Stage")["Properties"]["DefaultRouteSettings"]
    assert route_settings["ThrottlingRateLimit"] == each.settings.webhook_rate_limit >= 1
    assert route_settings["ThrottlingBurstLimit"] == each.settings.webhook_burst_limit
    assert route_settings["ThrottlingBurstLimit"] >= route_settings["ThrottlingRateLimit"]


def test_reserved_concurrency_and_throttle_only_as_asked_in_context() -> None:
    from aws_cdk.assertions import Template
    from voiceops_cdk.app import build

    template = Template.from_stack(
        build(
            {"webhook_reserved_concurrency": 25, "webhook_rate_limit": 7, "webhook_burst_limit": 9}, nag=False
        ).webhook
    )
    assert only(template, "AWS::Lambda::Function")["Properties"]["ReservedConcurrentExecutions"] == 25
    route_settings = only(template, "AWS::ApiGatewayV2::Stage")["Properties"]["DefaultRouteSettings"]
    assert (route_settings["ThrottlingRateLimit"], route_settings["ThrottlingBurstLimit"]) == (7, 9)
