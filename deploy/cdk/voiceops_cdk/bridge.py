"""The media bridge: ECS cluster, the public ALB (HTTPS, long idle timeout) and the bridge Fargate service.

Long calls shape every number here. A task drains by ALB deregistration, for deployments and scale-in
alike: deployments start new tasks and wait for them to pass the ALB health check (100 %/200 %) before ECS
deregisters an old one; the ALB sends a deregistering target no new connections while its established
WebSockets go on, for up to the deregistration delay (3600 s, the ALB's maximum, longer than the longest
call); ECS sends SIGTERM only once deregistration is complete, and the app's drain (DRAIN_TIMEOUT_S) fits
inside the container's stopTimeout. No task protects itself from scale-in: a protected task blocks
deployments and stays registered, so it keeps taking new calls (see tests/test_drain_model.py).

The ALB health check is liveness (`/healthz`: the process answers), never dependency status: a database or
Redis failover must not make ECS replace every task carrying calls.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from constructs import Construct

from voiceops_cdk import links
from voiceops_cdk.config import ACTIVE_CALLS_METRIC, APP_PORT, METRIC_NAMESPACE, DeploySettings
from voiceops_cdk.nag import ANY_RESOURCE, acknowledge, bucket_objects_finding
from voiceops_cdk.network import SecurityGroups
from voiceops_cdk.runtime import (
    RECORDING_WRITER_ACTIONS,
    AppDependencies,
    add_app_container,
    add_otel_sidecar,
    allow_metrics,
    app_environment,
    app_secrets,
    data_links,
    grant_recordings,
    log_group,
    release_tag,
)

ALB_IDLE_TIMEOUT_S = 3600  # an OpenAI Realtime session lasts at most 60 minutes
BRIDGE_RULE_PRIORITY = 10
# All the bridge host serves; anything else on bridge.<domain> gets the listener's 404 (the admin and the
# dashboard are on admin.<domain> only). The app refuses the rest as well (voiceops.asgi).
BRIDGE_PATHS = ("/media-stream", "/healthz", "/readyz")


def hosted_zone(scope: Construct, settings: DeploySettings) -> route53.IHostedZone | None:
    """The stage's zone when given by id and name (no lookup); otherwise DNS is managed by hand."""
    if not settings.hosted_zone_id:
        return None
    return route53.HostedZone.from_hosted_zone_attributes(
        scope, "Zone", hosted_zone_id=settings.hosted_zone_id, zone_name=settings.hosted_zone_name
    )


def active_calls_metric(settings: DeploySettings, statistic: str = "Average") -> cloudwatch.Metric:
    """One data point per bridge task per period, so Average = calls per task."""
    return cloudwatch.Metric(
        namespace=METRIC_NAMESPACE,
        metric_name=ACTIVE_CALLS_METRIC,
        dimensions_map={"Stage": settings.stage},
        statistic=statistic,
        period=Duration.minutes(1),
    )


class BridgeStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        vpc: ec2.IVpc,
        security_groups: SecurityGroups,
        deps: AppDependencies,
        log_bucket: s3.IBucket,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        sgs = security_groups.immutable_in(self)
        prefix = settings.name_prefix
        self.zone = hosted_zone(self, settings)

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=settings.cluster_name,
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENHANCED,
        )

        # --- the public edge -------------------------------------------------------------------------
        if settings.certificate_arn:
            self.certificate: acm.ICertificate = acm.Certificate.from_certificate_arn(
                self, "Certificate", settings.certificate_arn
            )
        else:
            self.certificate = acm.Certificate(
                self,
                "Certificate",
                domain_name=settings.bridge_host,
                # admin.<domain> is on this ALB only with web_platform=fargate (App Runner has its own).
                subject_alternative_names=[settings.web_host] if settings.web_platform == "fargate" else None,
                # Without a zone, CloudFormation waits until the operator adds the CNAMEs it prints.
                validation=acm.CertificateValidation.from_dns(self.zone),
            )
        self.alb = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=sgs.alb,
            idle_timeout=Duration.seconds(ALB_IDLE_TIMEOUT_S),
            drop_invalid_header_fields=True,
            deletion_protection=settings.is_prod,
        )
        self.alb.log_access_logs(log_bucket, "alb")
        self.listener = self.alb.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[self.certificate],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            open=False,  # the ALB security group already says who may connect
            default_action=elbv2.ListenerAction.fixed_response(
                404, content_type="text/plain", message_body="unknown host"
            ),
        )

        # --- the bridge service ------------------------------------------------------------------------
        self.log_group = log_group(self, "BridgeLogs", settings, "bridge")
        task = ecs.FargateTaskDefinition(
            self,
            "BridgeTask",
            family=f"{prefix}-bridge",
            cpu=1024,
            memory_limit_mib=2048,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            task_role=iam.Role(
                self,
                "BridgeTaskRole",
                role_name=f"{prefix}-bridge-task",
                assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            ),
            execution_role=iam.Role(
                self,
                "BridgeExecutionRole",
                role_name=f"{prefix}-bridge-exec",
                assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            ),
        )
        self.task_definition = task
        image = ecs.ContainerImage.from_ecr_repository(
            deps.bridge_repository, release_tag(self, deps.release_tag_parameter)
        )
        data = data_links(self, settings)
        self.container = add_app_container(
            task,
            name="bridge",
            image=image,
            environment=app_environment(settings, deps, data, "bridge", [settings.bridge_host]),
            secrets=app_secrets(self, settings, data.db_secret),
            group=self.log_group,
            stop_timeout_s=settings.stop_timeout_s,
        )
        add_otel_sidecar(task, self.log_group)
        allow_metrics(task)
        grant_recordings(task.task_role, settings, RECORDING_WRITER_ACTIONS)

        self.service = ecs.FargateService(
            self,
            "BridgeService",
            service_name=settings.service_name("bridge"),
            cluster=self.cluster,
            task_definition=task,
            desired_count=settings.bridge_min_tasks,
            security_groups=[sgs.bridge],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            # New tasks come up and pass the ALB health check before any old one is deregistered; old
            # ones then drain their calls (deregistration delay above).
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=Duration.seconds(60),
            enable_ecs_managed_tags=True,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "BridgeTargets",
            vpc=vpc,
            port=APP_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[self.service.load_balancer_target(container_name="bridge", container_port=APP_PORT)],
            deregistration_delay=Duration.seconds(settings.deregistration_delay_s),
            # Liveness: the process can carry calls. /readyz (draining, dependencies) is for people and probes
            # that route new work, not for the check that makes ECS replace a task.
            health_check=elbv2.HealthCheck(
                path="/healthz",
                healthy_http_codes="200",
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )
        self.listener.add_target_groups(
            "BridgeHost",
            priority=BRIDGE_RULE_PRIORITY,
            conditions=[
                elbv2.ListenerCondition.host_headers([settings.bridge_host]),
                elbv2.ListenerCondition.path_patterns(list(BRIDGE_PATHS)),
            ],
            target_groups=[self.target_group],
        )

        scaling = self.service.auto_scale_task_count(
            min_capacity=settings.bridge_min_tasks, max_capacity=settings.bridge_max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=60,
            scale_in_cooldown=Duration.minutes(10),
            scale_out_cooldown=Duration.minutes(1),
        )
        scaling.scale_on_memory_utilization(
            "Memory",
            target_utilization_percent=70,
            scale_in_cooldown=Duration.minutes(10),
            scale_out_cooldown=Duration.minutes(1),
        )
        scaling.scale_to_track_custom_metric(
            "ActiveCalls",
            metric=active_calls_metric(settings),
            target_value=settings.active_calls_target,
            scale_in_cooldown=Duration.minutes(10),
            scale_out_cooldown=Duration.minutes(1),
        )

        if self.zone is not None:
            alb_hosts = [(settings.bridge_host, "BridgeRecord")]
            if settings.web_platform == "fargate":  # with App Runner, admin.<domain> points at App Runner
                alb_hosts.append((settings.web_host, "WebRecord"))
            for host, record_id in alb_hosts:
                route53.ARecord(
                    self,
                    record_id,
                    zone=self.zone,
                    record_name=f"{host}.",
                    target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self.alb)),
                )

        # For the web and alarm stacks, through SSM (voiceops_cdk.links), not exports.
        links.publish(self, settings, "alb-https-listener-arn", self.listener.listener_arn)
        links.publish(self, settings, "alb-full-name", self.alb.load_balancer_full_name)
        links.publish(self, settings, "bridge-target-group-full-name", self.target_group.target_group_full_name)

        CfnOutput(self, "AlbDnsName", value=self.alb.load_balancer_dns_name)
        CfnOutput(self, "ClusterName", value=self.cluster.cluster_name)
        CfnOutput(self, "BridgeServiceName", value=self.service.service_name)

        acknowledge(
            task,
            "ECS2",
            "Only non-secret configuration is in the environment; secrets come from SSM and "
            "Secrets Manager through the task definition's secrets.",
        )
        acknowledge(
            self,
            "IAM5",
            "X-Ray and PutMetricData have no resource-level permissions (PutMetricData is "
            "limited by namespace); the execution role's ECR/Logs grants are CDK defaults scoped to the "
            "repository and log group; the S3 object grants are limited to the recordings bucket's objects "
            "(one key per call, not known in advance).",
            ANY_RESOURCE,
            bucket_objects_finding(settings.recordings_bucket_name),
        )
