"""The Twilio webhooks: API Gateway HTTP API ($default stage) + Lambda (Python 3.13) on a custom domain.

The `$default` stage has no path prefix, so `https://api.<domain>/twilio/voice` is both the URL Twilio
calls and the URL the app rebuilds to check X-Twilio-Signature. The execute-api endpoint is switched off
so there is exactly one public URL.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from constructs import Construct

from voiceops_cdk import links
from voiceops_cdk.adot import adot_python_layer_arn
from voiceops_cdk.bridge import hosted_zone
from voiceops_cdk.config import DeploySettings
from voiceops_cdk.data import DB_NAME
from voiceops_cdk.nag import ANY_RESOURCE, acknowledge, arn_finding
from voiceops_cdk.network import SecurityGroups
from voiceops_cdk.runtime import db_secret as data_secret
from voiceops_cdk.runtime import log_group, release_tag, ssm_parameter_arn

OTEL_WRAPPER = "/opt/otel-instrument"
WEBHOOK_TIMEOUT_S = 10  # Twilio gives up on a webhook after 15 s

WEBHOOK_PATHS = (
    "/twilio/voice", "/twilio/status", "/twilio/stream-ended", "/twilio/outbound", "/twilio/amd",
    "/twilio/whisper", "/twilio/transfer-ended",
)


class WebhookStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        vpc: ec2.IVpc,
        security_groups: SecurityGroups,
        artifacts: s3.IBucket,
        release_tag_parameter: str,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        sgs = security_groups.immutable_in(self)
        prefix = settings.name_prefix
        zone = hosted_zone(self, settings)
        # The proxy and the database secret come through SSM (voiceops_cdk.links): they can be replaced.
        proxy_endpoint = links.read(self, settings, "db-proxy-endpoint")
        db_secret = data_secret(self, settings)

        self.log_group = log_group(self, "WebhookLogs", settings, "webhook")
        # The ADOT Python layer (OpenTelemetry → X-Ray): its account and version differ by region.
        adot_layer_arn = settings.adot_lambda_layer_arn or adot_python_layer_arn(settings.region)
        self.function = lambda_.Function(
            self,
            "Webhook",
            function_name=settings.webhook_function_name,
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.X86_64,
            handler="lambda_entry.handler",
            # The zip that deploy/build_webhook_zip.sh makes and the deploy workflow uploads per release.
            code=lambda_.Code.from_bucket(artifacts, f"webhook/{release_tag(self, release_tag_parameter)}.zip"),
            memory_size=512,
            timeout=Duration.seconds(WEBHOOK_TIMEOUT_S),
            # Only when asked for (-c webhook_reserved_concurrency=N): a reservation fails on a new account
            # (quota 10, of which Lambda keeps 10 unreserved). The default cost cap is the stage throttle below.
            reserved_concurrent_executions=settings.webhook_reserved_concurrency or None,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[sgs.webhook],
            allow_public_subnet=False,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            layers=[lambda_.LayerVersion.from_layer_version_arn(self, "AdotLayer", adot_layer_arn)],
            environment={
                "DJANGO_SETTINGS_MODULE": "voiceops.settings",
                "VOICEOPS_COMPONENT": "webhook",
                "VOICEOPS_STAGE": settings.stage,
                # Secrets are read from SSM at cold start (never placed in this environment).
                "VOICEOPS_SSM_PREFIX": settings.ssm_prefix,
                "DJANGO_DEBUG": "0",
                "DJANGO_ALLOWED_HOSTS": settings.api_host,
                "PUBLIC_WEBHOOK_BASE_URL": f"https://{settings.api_host}",
                "BRIDGE_PUBLIC_URL": f"wss://{settings.bridge_host}/media-stream",
                "DB_HOST": proxy_endpoint,
                "DB_PORT": "5432",
                "DB_NAME": DB_NAME,
                "DB_SSLMODE": "require",
                "DB_SECRET_ARN": db_secret.secret_arn,
                "AWS_LAMBDA_EXEC_WRAPPER": OTEL_WRAPPER,
                "OTEL_SERVICE_NAME": "voiceops-webhook",
                "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment={settings.stage}",
                "OTEL_PROPAGATORS": "tracecontext,baggage,xray",
            },
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadStageParameters",
                actions=["ssm:GetParametersByPath", "ssm:GetParameters", "ssm:GetParameter"],
                resources=[
                    ssm_parameter_arn(settings, "").rstrip("/"),
                    ssm_parameter_arn(settings, "*"),
                ],
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="DecryptSecureStrings",
                actions=["kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"kms:ViaService": f"ssm.{Aws.REGION}.amazonaws.com"}},
            )
        )
        db_secret.grant_read(self.function)

        # --- HTTP API ------------------------------------------------------------------------------------
        # Its own certificate: the ALB's may not cover api.<domain>, and the two can then rotate apart.
        certificate = acm.Certificate(
            self,
            "ApiCertificate",
            domain_name=settings.api_host,
            validation=acm.CertificateValidation.from_dns(zone),
        )
        self.domain = apigwv2.DomainName(self, "ApiDomain", domain_name=settings.api_host, certificate=certificate)
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            api_name=f"{prefix}-webhook",
            create_default_stage=False,
            disable_execute_api_endpoint=True,
        )
        integration = integrations.HttpLambdaIntegration(
            "WebhookIntegration",
            self.function,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
        )
        # Every URL voiceops hands Twilio (lambda_webhook/urls.py); a path without a route is a 404 to Twilio.
        for path in WEBHOOK_PATHS:
            self.api.add_routes(path=path, methods=[apigwv2.HttpMethod.POST], integration=integration)

        self.access_logs = log_group(self, "ApiAccessLogs", settings, "webhook-api")
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            domain_mapping=apigwv2.DomainMappingOptions(domain_name=self.domain),
            # The cost cap that works on every account: API Gateway answers 429 above this rate (Twilio
            # retries), before any Lambda runs. Steady rate per second and burst, per stage (context values).
            throttle=apigwv2.ThrottleSettings(
                rate_limit=settings.webhook_rate_limit, burst_limit=settings.webhook_burst_limit
            ),
        )
        cfn_stage = self.stage.node.default_child
        cfn_stage.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(  # type: ignore[union-attr]
            destination_arn=self.access_logs.log_group_arn,
            format=(
                '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
                '"time":"$context.requestTime","method":"$context.httpMethod","path":"$context.path",'
                '"status":"$context.status","latency":"$context.responseLatency",'
                '"integrationError":"$context.integrationErrorMessage"}'
            ),
        )

        if zone is not None:
            route53.ARecord(
                self,
                "ApiRecord",
                zone=zone,
                record_name=f"{settings.api_host}.",
                target=route53.RecordTarget.from_alias(
                    route53_targets.ApiGatewayv2DomainProperties(
                        self.domain.regional_domain_name, self.domain.regional_hosted_zone_id
                    )
                ),
            )

        links.publish(self, settings, "webhook-api-id", self.api.api_id)

        CfnOutput(self, "TwilioVoiceWebhookUrl", value=f"https://{settings.api_host}/twilio/voice")
        CfnOutput(self, "TwilioStatusCallbackUrl", value=f"https://{settings.api_host}/twilio/status")
        CfnOutput(self, "ApiDomainTarget", value=self.domain.regional_domain_name)
        CfnOutput(self, "WebhookFunctionName", value=self.function.function_name)

        acknowledge(
            self.api,
            "APIG4",
            "Twilio cannot send IAM or JWT credentials; every request is authenticated by the "
            "app verifying X-Twilio-Signature (HMAC with the auth token) and 403 otherwise.",
        )
        acknowledge(
            self.function,
            "IAM4",
            "AWSLambdaVPCAccessExecutionRole/BasicExecutionRole are the AWS-managed minimum "
            "for a function in a VPC writing its own logs.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        )
        acknowledge(
            self.function,
            "IAM5",
            "The SSM grant is this stage's /voiceops/<stage>/* path; kms:Decrypt is limited to "
            "calls via SSM; X-Ray has no resource-level permissions.",
            ANY_RESOURCE,
            arn_finding("ssm", f"parameter/voiceops/{settings.stage}/*"),
        )
        acknowledge(
            self.function,
            "L1",
            "Python 3.13 is the runtime the design pins (the zip is built from "
            "cp313 wheels); moving to a newer runtime is a deliberate, tested change.",
        )
