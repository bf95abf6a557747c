"""What every app container shares: plain environment, secrets by reference, logs and the ADOT sidecar."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, CfnParameter, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from voiceops_cdk import links
from voiceops_cdk.config import APP_PORT, METRIC_NAMESPACE, SECRET_NAMES, DeploySettings
from voiceops_cdk.data import DB_NAME

# The AWS Distro for OpenTelemetry collector: receives OTLP from the app on loopback, sends traces to
# X-Ray and metrics to CloudWatch (the X-Ray SDKs are in maintenance; OpenTelemetry is the way in).
ADOT_COLLECTOR_IMAGE = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3"
ADOT_COLLECTOR_CONFIG = "/etc/ecs/ecs-default-config.yaml"
OTLP_GRPC_ENDPOINT = "http://127.0.0.1:4317"
# What an ADOT collector needs to send traces to X-Ray.
XRAY_WRITE_ACTIONS = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
)


@dataclass
class AppDependencies:
    """What the app stacks take from the foundation stacks (static, ci); the data stack's values come through
    SSM (`data_links`)."""

    static_bucket_name: str
    static_domain: str
    bridge_repository: ecr.IRepository
    web_repository: ecr.IRepository
    release_tag_parameter: str


@dataclass(frozen=True)
class DataLinks:
    """The data stack's endpoints and secret, as read in one consuming stack (voiceops_cdk.links)."""

    db_host: str
    db_port: str
    db_secret: secretsmanager.ISecret
    redis_url: str


def db_secret(scope: Construct, settings: DeploySettings) -> secretsmanager.ISecret:
    """The RDS-generated secret, by its full ARN (read through SSM) in the calling stack."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child("DbSecret")
    if existing is not None:
        return existing  # type: ignore[return-value]
    return secretsmanager.Secret.from_secret_complete_arn(
        stack, "DbSecret", links.read(stack, settings, "db-secret-arn")
    )


def data_links(scope: Construct, settings: DeploySettings) -> DataLinks:
    return DataLinks(
        db_host=links.read(scope, settings, "db-host"),
        db_port=links.read(scope, settings, "db-port"),
        db_secret=db_secret(scope, settings),
        redis_url=links.read(scope, settings, "redis-url"),
    )


def retention(settings: DeploySettings) -> logs.RetentionDays:
    return logs.RetentionDays.THREE_MONTHS if settings.log_retention_days >= 90 else logs.RetentionDays.TWO_WEEKS


def log_group(scope: Construct, construct_id: str, settings: DeploySettings, name: str) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=settings.log_group_name(name),
        retention=retention(settings),
        removal_policy=RemovalPolicy.RETAIN if settings.is_prod else RemovalPolicy.DESTROY,
    )


def secure_parameter(scope: Construct, name: str, settings: DeploySettings) -> ssm.IStringParameter:
    """A reference (by name only, no lookup) to the operator-written SecureString /voiceops/<stage>/NAME."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(f"Param{name}")
    if existing is not None:
        return existing  # type: ignore[return-value]
    return ssm.StringParameter.from_secure_string_parameter_attributes(
        stack, f"Param{name}", parameter_name=f"{settings.ssm_prefix}{name}"
    )


def ssm_parameter_arn(settings: DeploySettings, name: str) -> str:
    return f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter{settings.ssm_prefix}{name}"


def release_tag(scope: Construct, parameter_name: str) -> str:
    """The released tag, resolved by CloudFormation at deploy time from SSM (a parameter, not a lookup)."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child("ReleaseTagValue")
    if isinstance(existing, CfnParameter):
        return existing.value_as_string
    return CfnParameter(
        stack,
        "ReleaseTagValue",
        type="AWS::SSM::Parameter::Value<String>",
        default=parameter_name,
        description="SSM parameter holding the released tag (written by the deploy workflow)",
    ).value_as_string


def app_environment(
    settings: DeploySettings, deps: AppDependencies, data: DataLinks, component: str, hosts: list[str]
) -> dict[str, str]:
    """Plain, non-secret settings. Secrets never go here (see app_secrets)."""
    return {
        "DJANGO_DEBUG": "0",
        "VOICEOPS_COMPONENT": component,
        "VOICEOPS_STAGE": settings.stage,
        "DJANGO_ALLOWED_HOSTS": ",".join([*hosts, "localhost", "127.0.0.1"]),
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{settings.web_host}",
        "PORT": str(APP_PORT),
        "DB_HOST": data.db_host,
        "DB_PORT": data.db_port,
        "DB_NAME": DB_NAME,
        "DB_SSLMODE": "require",
        "REDIS_URL": data.redis_url,
        "PUBLIC_WEBHOOK_BASE_URL": f"https://{settings.api_host}",
        "BRIDGE_PUBLIC_URL": f"wss://{settings.bridge_host}/media-stream",
        "DRAIN_TIMEOUT_S": str(settings.drain_timeout_s),
        "METRICS_NAMESPACE": METRIC_NAMESPACE,
        "AWS_STORAGE_BUCKET_NAME": deps.static_bucket_name,
        "AWS_S3_CUSTOM_DOMAIN": deps.static_domain,
        "RECORDINGS_BUCKET_NAME": settings.recordings_bucket_name,
        "OTEL_SERVICE_NAME": f"voiceops-{component}",
        "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment={settings.stage}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": OTLP_GRPC_ENDPOINT,
        "OTEL_PROPAGATORS": "tracecontext,baggage,xray",
        "OTEL_PYTHON_ID_GENERATOR": "xray",
        "PYTHONUNBUFFERED": "1",
    }


def app_secrets(scope: Construct, settings: DeploySettings, db_secret: secretsmanager.ISecret) -> dict[str, ecs.Secret]:
    secrets = {name: ecs.Secret.from_ssm_parameter(secure_parameter(scope, name, settings)) for name in SECRET_NAMES}
    # Fields of the RDS-generated secret; the entrypoint assembles DATABASE_URL from them.
    secrets["DB_USER"] = ecs.Secret.from_secrets_manager(db_secret, "username")
    secrets["DB_PASSWORD"] = ecs.Secret.from_secrets_manager(db_secret, "password")
    return secrets


def add_otel_sidecar(task: ecs.FargateTaskDefinition, group: logs.ILogGroup) -> ecs.ContainerDefinition:
    sidecar = task.add_container(
        "otel-collector",
        image=ecs.ContainerImage.from_registry(ADOT_COLLECTOR_IMAGE),
        command=[f"--config={ADOT_COLLECTOR_CONFIG}"],
        essential=False,  # losing traces must not stop calls
        memory_reservation_mib=128,
        logging=ecs.LogDrivers.aws_logs(stream_prefix="otel", log_group=group),
    )
    task.add_to_task_role_policy(
        iam.PolicyStatement(
            sid="OtelTraces",
            actions=list(XRAY_WRITE_ACTIONS),
            resources=["*"],  # X-Ray has no resource-level permissions for these
        )
    )
    return sidecar


def allow_metrics(task: ecs.TaskDefinition) -> None:
    task.add_to_task_role_policy(
        iam.PolicyStatement(
            sid="PublishVoiceOpsMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],  # PutMetricData has no resources; the namespace condition scopes it
            conditions={"StringEquals": {"cloudwatch:namespace": [METRIC_NAMESPACE, "ECS/AWSOTel/Application"]}},
        )
    )


def add_app_container(
    task: ecs.FargateTaskDefinition,
    *,
    name: str,
    image: ecs.ContainerImage,
    environment: dict[str, str],
    secrets: dict[str, ecs.Secret],
    group: logs.ILogGroup,
    stop_timeout_s: int | None = None,
    command: list[str] | None = None,
    health_path: str | None = "/healthz",
) -> ecs.ContainerDefinition:
    health = None
    if health_path:
        probe = (
            f"import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:{APP_PORT}{health_path}', timeout=3)"
        )
        health = ecs.HealthCheck(
            command=["CMD", "python", "-c", probe],
            interval=Duration.seconds(15),
            timeout=Duration.seconds(5),
            retries=3,
            start_period=Duration.seconds(30),
        )
    container = task.add_container(
        name,
        image=image,
        command=command,
        environment=environment,
        secrets=secrets,
        logging=ecs.LogDrivers.aws_logs(stream_prefix=name, log_group=group),
        stop_timeout=Duration.seconds(stop_timeout_s) if stop_timeout_s else None,
        health_check=health,
        essential=True,
        linux_parameters=ecs.LinuxParameters(task, f"{name}Linux", init_process_enabled=True),
    )
    if health_path:
        container.add_port_mappings(ecs.PortMapping(container_port=APP_PORT, name="http"))
    return container


def grant_static_files(role: iam.IGrantable, settings: DeploySettings) -> None:
    """What django-storages needs for collectstatic and uploads: no more than these objects and a listing."""
    bucket_arn = f"arn:{Aws.PARTITION}:s3:::{settings.static_bucket_name}"
    role.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(sid="StaticFilesList", actions=["s3:ListBucket"], resources=[bucket_arn])
    )
    role.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            sid="StaticFilesObjects",
            actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            resources=[f"{bucket_arn}/*"],
        )
    )


# What each role may do with recordings' objects (docs/recordings.md). ListBucket comes with both: without it a
# HeadObject on a missing key answers 403, not the 404 django-storages needs to tell a free name.
RECORDING_WRITER_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")  # the bridge stores them
RECORDING_READER_ACTIONS = ("s3:GetObject", "s3:DeleteObject")  # web signs URLs, purge_calls deletes


def grant_recordings(role: iam.IGrantable, settings: DeploySettings, object_actions: tuple[str, ...]) -> None:
    """Object rights on the recordings bucket only; a signed URL carries exactly the signer's rights."""
    bucket_arn = f"arn:{Aws.PARTITION}:s3:::{settings.recordings_bucket_name}"
    role.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(sid="RecordingsList", actions=["s3:ListBucket"], resources=[bucket_arn])
    )
    role.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(sid="RecordingsObjects", actions=list(object_actions), resources=[f"{bucket_arn}/*"])
    )
