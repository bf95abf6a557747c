"""Network: a 2-AZ VPC, one security group per service, and the VPC endpoints the tasks use.

Every security group and every rule between them lives here, written out explicitly. Other stacks get
immutable references (`mutable=False`), so no construct can quietly widen a rule elsewhere, and there are
no cross-stack rule cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from voiceops_cdk.config import APP_PORT, DeploySettings
from voiceops_cdk.nag import acknowledge

POSTGRES_PORT = 5432
REDIS_PORT = 6379
HTTPS_PORT = 443

INTERFACE_ENDPOINTS = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
}


@dataclass
class SecurityGroups:
    alb: ec2.ISecurityGroup
    bridge: ec2.ISecurityGroup
    web: ec2.ISecurityGroup
    webhook: ec2.ISecurityGroup
    database: ec2.ISecurityGroup
    db_proxy: ec2.ISecurityGroup
    redis: ec2.ISecurityGroup
    endpoints: ec2.ISecurityGroup
    release: ec2.ISecurityGroup

    def immutable_in(self, scope: Construct) -> SecurityGroups:
        """References for another stack that cannot add rules to these groups."""

        def ref(name: str, group: ec2.ISecurityGroup) -> ec2.ISecurityGroup:
            return ec2.SecurityGroup.from_security_group_id(
                scope, f"{name}Sg", group.security_group_id, mutable=False, allow_all_outbound=False
            )

        return SecurityGroups(**{name: ref(name, group) for name, group in vars(self).items()})


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploySettings, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            # One NAT gateway in dev (cost), one per AZ in prod (an AZ outage must not cut OpenAI off).
            nat_gateways=2 if settings.is_prod else 1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
                ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
            restrict_default_security_group=True,
        )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))

        def group(name: str, description: str) -> ec2.SecurityGroup:
            return ec2.SecurityGroup(self, name, vpc=self.vpc, description=description, allow_all_outbound=False)

        alb = group("AlbSg", "Public ALB: HTTPS from the internet, to the bridge and web tasks")
        bridge = group("BridgeSg", "Bridge tasks: from the ALB; to OpenAI/Twilio (443), Postgres, Redis")
        web = group("WebSg", "Web tasks (ECS or App Runner connector): from the ALB; to Postgres, Redis, 443")
        webhook = group("WebhookSg", "Webhook Lambda: to RDS Proxy and AWS APIs (443)")
        database = group("DatabaseSg", "RDS PostgreSQL: from the app tasks and RDS Proxy only")
        db_proxy = group("DbProxySg", "RDS Proxy: from the webhook Lambda; to the database")
        redis = group("RedisSg", "ElastiCache Redis: from the bridge and web tasks only")
        endpoints = group("EndpointsSg", "Interface VPC endpoints: HTTPS from the app security groups")
        release = group("ReleaseSg", "One-off release tasks (migrate, collectstatic): to Postgres and 443")

        alb.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(HTTPS_PORT), "HTTPS from callers and staff")
        alb.add_ingress_rule(ec2.Peer.any_ipv6(), ec2.Port.tcp(HTTPS_PORT), "HTTPS from callers and staff")

        def allow(source: ec2.SecurityGroup, target: ec2.SecurityGroup, port: int, why: str) -> None:
            source.add_egress_rule(target, ec2.Port.tcp(port), why)
            target.add_ingress_rule(source, ec2.Port.tcp(port), why)

        allow(alb, bridge, APP_PORT, "ALB to bridge tasks")
        allow(alb, web, APP_PORT, "ALB to web tasks")
        for app_group in (bridge, web, release):
            allow(app_group, database, POSTGRES_PORT, "app to PostgreSQL")
            allow(app_group, endpoints, HTTPS_PORT, "app to VPC endpoints")
        for app_group in (bridge, web):
            allow(app_group, redis, REDIS_PORT, "app to Redis channel layer")
        allow(webhook, db_proxy, POSTGRES_PORT, "webhook Lambda to RDS Proxy")
        allow(webhook, endpoints, HTTPS_PORT, "webhook Lambda to VPC endpoints (SSM, Secrets Manager)")
        allow(db_proxy, database, POSTGRES_PORT, "RDS Proxy to PostgreSQL")
        # Outbound HTTPS to the internet (through NAT): OpenAI Realtime and Twilio's REST API from the
        # bridge; S3 (gateway endpoint prefix list is not enough for CloudFront-backed tools), OpenAI and
        # Twilio from web; AWS APIs without an endpoint (X-Ray, CloudWatch metrics) from everything.
        for app_group in (bridge, web, webhook, release):
            app_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(HTTPS_PORT), "HTTPS to public APIs")

        self.security_groups = SecurityGroups(
            alb=alb,
            bridge=bridge,
            web=web,
            webhook=webhook,
            database=database,
            db_proxy=db_proxy,
            redis=redis,
            endpoints=endpoints,
            release=release,
        )

        # The S3 gateway endpoint is free and carries ECR's image layers. The interface endpoints keep image
        # manifests, secrets, logs and metrics off the NAT gateways, at a fixed hourly price per AZ: a context
        # choice (interface_endpoints), off by default because at small scale they cost more than they save.
        self.vpc.add_gateway_endpoint("S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3)
        if settings.interface_endpoints:
            self._add_interface_endpoints(endpoints)

        # The deploy workflow runs the release task (migrate, collectstatic) with these.
        CfnOutput(self, "ReleaseSecurityGroup", value=release.security_group_id)
        CfnOutput(
            self,
            "ReleaseSubnets",
            value=",".join(self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids),
        )
        acknowledge(
            alb, "EC23", "The public ALB must accept HTTPS from anywhere: Twilio's media streams and staff browsers."
        )

    def _add_interface_endpoints(self, group: ec2.ISecurityGroup) -> None:
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(
                f"{name}Endpoint",
                service=service,
                subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                security_groups=[group],
                open=False,
                private_dns_enabled=True,
            )
