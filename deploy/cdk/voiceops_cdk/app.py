"""Composes the stacks. `build()` is what app.py and the tests call, so both synthesize the same thing."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, Environment, Stack, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from voiceops_cdk.bridge import BridgeStack
from voiceops_cdk.ci import CiStack, release_tag_parameter_name
from voiceops_cdk.config import DeploySettings, settings_from_context
from voiceops_cdk.data import DataStack
from voiceops_cdk.network import NetworkStack
from voiceops_cdk.observability import ObservabilityStack
from voiceops_cdk.runtime import AppDependencies
from voiceops_cdk.static import StaticStack
from voiceops_cdk.web import WebStack
from voiceops_cdk.webhook import WebhookStack

BOUNDARIES = ("ci", "network", "data", "static", "bridge", "web", "webhook", "observability")


def stack_name(settings: DeploySettings, boundary: str) -> str:
    return f"VoiceOps-{settings.stage}-{boundary.title()}"


class VoiceOps:
    """Holds the app and its stacks so tests can reach each one."""

    def __init__(self, app: App, settings: DeploySettings, nag: bool) -> None:
        self.app = app
        self.settings = settings

        def common(boundary: str, what: str) -> dict[str, Any]:
            return {
                "construct_id": stack_name(settings, boundary),
                "settings": settings,
                # Region only, no account: nothing is looked up at synth time.
                "env": Environment(region=settings.region),
                "description": f"voiceops ({settings.stage}): {what}",
            }

        self.ci = CiStack(app, **common("ci", "ECR repositories, release artifacts, GitHub OIDC deploy role"))
        self.network = NetworkStack(app, **common("network", "VPC, security groups, VPC endpoints"))
        vpc, sgs = self.network.vpc, self.network.security_groups
        self.data = DataStack(app, vpc=vpc, security_groups=sgs, **common("data", "PostgreSQL, RDS Proxy, Redis"))
        self.static = StaticStack(
            app, **common("static", "static files (S3 + CloudFront), call recordings (private S3), access logs")
        )
        # Only the foundation stacks (ci, network, static) pass constructs to the others (CloudFormation
        # exports); the data, bridge, web and webhook stacks hand values on through SSM (voiceops_cdk.links),
        # so replacing a database, Redis, the proxy or switching the web platform never meets an export in use.
        deps = AppDependencies(
            static_bucket_name=self.static.bucket.bucket_name,
            static_domain=self.static.distribution.distribution_domain_name,
            bridge_repository=self.ci.repositories["bridge"],
            web_repository=self.ci.repositories["web"],
            release_tag_parameter=release_tag_parameter_name(settings),
        )
        self.bridge = BridgeStack(
            app,
            vpc=vpc,
            security_groups=sgs,
            deps=deps,
            log_bucket=self.static.log_bucket,
            **common("bridge", "ECS cluster, ALB, media bridge service"),
        )
        self.web = WebStack(
            app,
            vpc=vpc,
            security_groups=sgs,
            deps=deps,
            **common("web", f"web app on {settings.web_platform}, release task"),
        )
        self.webhook = WebhookStack(
            app,
            vpc=vpc,
            security_groups=sgs,
            artifacts=self.ci.artifacts,
            release_tag_parameter=deps.release_tag_parameter,
            **common("webhook", "Twilio webhooks: HTTP API + Lambda"),
        )
        self.observability = ObservabilityStack(app, **common("observability", "alarms to SNS and Slack"))
        # The order the SSM links need (a reader deploys after the stack that writes its parameters).
        self.bridge.add_stack_dependency(self.data)
        self.web.add_stack_dependency(self.bridge)
        self.web.add_stack_dependency(self.data)
        self.webhook.add_stack_dependency(self.data)
        for producer in (self.data, self.bridge, self.web, self.webhook):
            self.observability.add_stack_dependency(producer)
        self.stacks: dict[str, Stack] = {
            "ci": self.ci,
            "network": self.network,
            "data": self.data,
            "static": self.static,
            "bridge": self.bridge,
            "web": self.web,
            "webhook": self.webhook,
            "observability": self.observability,
        }
        for stack in self.stacks.values():
            for key, value in (("project", "voiceops"), ("stage", settings.stage)):
                # DB proxy target groups take no tags (CloudFormation rejects the property).
                Tags.of(stack).add(key, value, exclude_resource_types=["AWS::RDS::DBProxyTargetGroup"])
        if nag:
            Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def build(context: dict[str, Any] | None = None, *, nag: bool = True, outdir: str | None = None) -> VoiceOps:
    app = App(context=context or {}, outdir=outdir)
    return VoiceOps(app, settings_from_context(app.node), nag)
