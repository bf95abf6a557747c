"""Deployment settings read from CDK context (`-c stage=prod -c domain=voice.example.com ...`).

Everything here is a plain value known at synth time: no account or hosted-zone lookups, so `cdk synth`
works without credentials. The region is a context value (ALB access logging needs it at synth); the
account stays a deploy-time token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aws_cdk import Aws
from constructs import Node

from voiceops_cdk.adot import adot_python_layer_arn
from voiceops_cdk.metric_names import Bridge

STAGES = ("dev", "prod")
WEB_PLATFORMS = ("fargate", "apprunner")

# Names (from the project's CONTRACT) that hold secrets. They live in SSM Parameter Store as SecureString
# parameters named /voiceops/<stage>/<NAME>; the operator writes them (CloudFormation cannot create
# SecureStrings), and task definitions, App Runner and the Lambda reference them by ARN only.
SECRET_NAMES = ("DJANGO_SECRET_KEY", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "OPENAI_API_KEY")

# The bridge's active-calls metric (published by the bridge process itself, one data point per task).
METRIC_NAMESPACE = "VoiceOps"
ACTIVE_CALLS_METRIC = Bridge.ACTIVE_CALLS

# Fargate's hard ceiling for a container's stopTimeout.
FARGATE_MAX_STOP_TIMEOUT_S = 120
# The ALB's maximum deregistration delay. A bridge task drains by deregistration: the ALB sends it no new
# calls, lets its established WebSockets run, and ECS sends SIGTERM only once they are all closed (or this
# delay has passed), so the longest call must fit in it: AgentConfig.max_call_minutes is capped at 58
# (calls/models.py; tests/test_drain_model.py reads it from there).
ALB_MAX_DEREGISTRATION_DELAY_S = 3600
# App port inside every container (the app reads PORT; the images default to it).
APP_PORT = 8000


@dataclass(frozen=True)
class DeploySettings:
    stage: str
    domain: str
    web_platform: str = "fargate"
    region: str = "us-east-1"
    github_repository: str = "example-org/voiceops"
    drain_timeout_s: int = 110
    calls_per_task: int = 79  # measured: a 1 vCPU / 2 GB task holds 79 calls with headroom (docs/perf.md)
    bridge_min_tasks: int = 2
    bridge_max_tasks: int = 10
    web_min_tasks: int = 1
    # 0 = no reserved concurrency (the default): new accounts have a Lambda concurrency quota of 10 and
    # Lambda keeps 10 unreserved, so any reservation fails there. The cost cap is the API stage throttle.
    webhook_reserved_concurrency: int = 0
    webhook_rate_limit: int = 10
    webhook_burst_limit: int = 20
    log_retention_days: int = 30
    # Six interface endpoints (ECR api+dkr, Secrets Manager, SSM, Logs, Monitoring) in two AZs cost about
    # $88 a month before traffic: more than the NAT processing they save until ~2.5 TB/month (docs/deploy.md).
    interface_endpoints: bool = False
    hosted_zone_id: str = ""
    hosted_zone_name: str = ""
    certificate_arn: str = ""
    slack_workspace_id: str = ""
    slack_channel_id: str = ""
    github_oidc_provider_arn: str = ""
    adot_lambda_layer_arn: str = ""
    alarm_email: str = ""
    # Days a call recording is kept in S3 before a lifecycle rule deletes it; 0 = until purge_calls deletes it.
    recordings_retention_days: int = 0

    # Public host names, all under the stage's domain.
    @property
    def api_host(self) -> str:
        return f"api.{self.domain}"

    @property
    def bridge_host(self) -> str:
        return f"bridge.{self.domain}"

    @property
    def web_host(self) -> str:
        return f"admin.{self.domain}"

    @property
    def ssm_prefix(self) -> str:
        return f"/voiceops/{self.stage}/"

    @property
    def name_prefix(self) -> str:
        return f"voiceops-{self.stage}"

    # Names other stacks (and the deploy workflow) use to find things without importing them.
    @property
    def cluster_name(self) -> str:
        return self.name_prefix

    def service_name(self, kind: str) -> str:
        return f"{self.name_prefix}-{kind}"

    @property
    def webhook_function_name(self) -> str:
        return f"{self.name_prefix}-webhook"

    def log_group_name(self, name: str) -> str:
        return f"/voiceops/{self.stage}/{name}"

    @property
    def static_bucket_name(self) -> str:
        """Named (with the account id, resolved at deploy) so other stacks can scope IAM without imports."""
        return f"{self.name_prefix}-static-{Aws.ACCOUNT_ID}-{self.region}"

    @property
    def artifacts_bucket_name(self) -> str:
        return f"{self.name_prefix}-artifacts-{Aws.ACCOUNT_ID}-{self.region}"

    @property
    def recordings_bucket_name(self) -> str:
        """Private call recordings (never behind CloudFront); named like the static bucket, for the same reason."""
        return f"{self.name_prefix}-recordings-{Aws.ACCOUNT_ID}-{self.region}"

    @property
    def is_prod(self) -> bool:
        return self.stage == "prod"

    @property
    def stop_timeout_s(self) -> int:
        """Container stopTimeout (SIGTERM to SIGKILL): the app's drain plus a margin to end calls politely
        and exit, capped by Fargate. With deregistration draining, SIGTERM normally finds no call left."""
        return min(self.drain_timeout_s + 10, FARGATE_MAX_STOP_TIMEOUT_S)

    @property
    def deregistration_delay_s(self) -> int:
        """The ALB lets a deregistering bridge task's calls run to their natural end (see the constant)."""
        return ALB_MAX_DEREGISTRATION_DELAY_S

    @property
    def active_calls_target(self) -> int:
        """Target tracking aims for this many calls per task, leaving headroom for bursts."""
        return max(1, int(self.calls_per_task * 0.6))

    @property
    def active_calls_alarm_threshold(self) -> int:
        return max(1, int(self.calls_per_task * 0.85))


_DOMAIN_RE = re.compile(r"^(?=.{4,200}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def _ctx(node: Node, key: str, default: str = "") -> str:
    value = node.try_get_context(key)
    return default if value is None else str(value)


def _ctx_int(node: Node, key: str, default: int) -> int:
    raw = node.try_get_context(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"context {key} must be an integer, got {raw!r}") from None


def _ctx_bool(node: Node, key: str, default: bool) -> bool:
    raw = node.try_get_context(key)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in {"true", "1", "yes", "on"}:
        return True
    if value in {"false", "0", "no", "off"}:
        return False
    raise ValueError(f"context {key} must be true or false, got {raw!r}")


def settings_from_context(node: Node) -> DeploySettings:
    """Validate the context once, up front, so a typo fails synth instead of a deployment."""
    stage = _ctx(node, "stage", "dev")
    if stage not in STAGES:
        raise ValueError(f"context stage must be one of {STAGES}, got {stage!r}")
    domain = _ctx(node, "domain", f"{stage}.voiceops.example.com").lower().rstrip(".")
    if not _DOMAIN_RE.match(domain):
        raise ValueError(f"context domain is not a DNS name: {domain!r}")
    web_platform = _ctx(node, "web_platform", "fargate")
    if web_platform not in WEB_PLATFORMS:
        raise ValueError(f"context web_platform must be one of {WEB_PLATFORMS}, got {web_platform!r}")
    repo = _ctx(node, "github_repository", "example-org/voiceops")
    if not _REPO_RE.match(repo):
        raise ValueError(f"context github_repository must be owner/name, got {repo!r}")
    region = _ctx(node, "region", "us-east-1")
    if not re.match(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", region):
        raise ValueError(f"context region is not an AWS region name: {region!r}")
    prod = stage == "prod"
    settings = DeploySettings(
        region=region,
        stage=stage,
        domain=domain,
        web_platform=web_platform,
        github_repository=repo,
        drain_timeout_s=_ctx_int(node, "drain_timeout_s", 110),
        calls_per_task=_ctx_int(node, "calls_per_task", DeploySettings.calls_per_task),
        bridge_min_tasks=_ctx_int(node, "bridge_min_tasks", 2 if prod else 1),
        bridge_max_tasks=_ctx_int(node, "bridge_max_tasks", 20 if prod else 3),
        web_min_tasks=_ctx_int(node, "web_min_tasks", 2 if prod else 1),
        webhook_reserved_concurrency=_ctx_int(node, "webhook_reserved_concurrency", 0),
        webhook_rate_limit=_ctx_int(node, "webhook_rate_limit", 50 if prod else 10),
        webhook_burst_limit=_ctx_int(node, "webhook_burst_limit", 100 if prod else 20),
        log_retention_days=_ctx_int(node, "log_retention_days", 90 if prod else 14),
        interface_endpoints=_ctx_bool(node, "interface_endpoints", False),
        hosted_zone_id=_ctx(node, "hosted_zone_id"),
        hosted_zone_name=_ctx(node, "hosted_zone_name"),
        certificate_arn=_ctx(node, "certificate_arn"),
        slack_workspace_id=_ctx(node, "slack_workspace_id"),
        slack_channel_id=_ctx(node, "slack_channel_id"),
        github_oidc_provider_arn=_ctx(node, "github_oidc_provider_arn"),
        adot_lambda_layer_arn=_ctx(node, "adot_lambda_layer_arn"),
        alarm_email=_ctx(node, "alarm_email"),
        recordings_retention_days=_ctx_int(node, "recordings_retention_days", 0),
    )
    if not 1 <= settings.drain_timeout_s <= FARGATE_MAX_STOP_TIMEOUT_S - 10:
        raise ValueError("context drain_timeout_s must fit Fargate's 120 s stopTimeout (at most 110)")
    if settings.bridge_min_tasks < 1 or settings.bridge_max_tasks < settings.bridge_min_tasks:
        raise ValueError("bridge_min_tasks must be >= 1 and <= bridge_max_tasks")
    if settings.recordings_retention_days < 0:
        raise ValueError("recordings_retention_days must be 0 (keep until purged) or a number of days")
    if settings.webhook_reserved_concurrency < 0:
        raise ValueError("webhook_reserved_concurrency must be 0 (none) or a positive number of executions")
    if not 1 <= settings.webhook_rate_limit <= settings.webhook_burst_limit:
        raise ValueError("webhook_rate_limit must be >= 1 and <= webhook_burst_limit")
    if bool(settings.hosted_zone_id) != bool(settings.hosted_zone_name):
        raise ValueError("hosted_zone_id and hosted_zone_name go together")
    if bool(settings.slack_workspace_id) != bool(settings.slack_channel_id):
        raise ValueError("slack_workspace_id and slack_channel_id go together")
    if not settings.adot_lambda_layer_arn:
        adot_python_layer_arn(settings.region)  # an unknown region fails here, with what to do about it
    return settings
