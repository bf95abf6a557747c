"""The web app (admin + dashboard) and the one-off release task (migrate, collectstatic).

`web_platform=fargate` (default): an ECS Fargate service behind the bridge's ALB, routed by host name, which
also carries the dashboard's live WebSocket. `web_platform=apprunner`: an App Runner service with a VPC
connector, for accounts that still have App Runner (closed to new customers since 30 Apr 2026).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_apprunner as apprunner
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from aws_cdk import custom_resources as cr
from constructs import Construct

from voiceops_cdk import links
from voiceops_cdk.bridge import hosted_zone
from voiceops_cdk.config import APP_PORT, SECRET_NAMES, DeploySettings
from voiceops_cdk.nag import ANY_RESOURCE, acknowledge, bucket_objects_finding
from voiceops_cdk.network import SecurityGroups
from voiceops_cdk.runtime import (
    RECORDING_READER_ACTIONS,
    XRAY_WRITE_ACTIONS,
    AppDependencies,
    add_app_container,
    add_otel_sidecar,
    allow_metrics,
    app_environment,
    app_secrets,
    data_links,
    grant_recordings,
    grant_static_files,
    log_group,
    release_tag,
    ssm_parameter_arn,
)

WEB_RULE_PRIORITY = 20


class WebStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        vpc: ec2.IVpc,
        security_groups: SecurityGroups,
        deps: AppDependencies,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.deps = deps
        self.data = data_links(self, settings)
        self.sgs = security_groups.immutable_in(self)
        self.prefix = settings.name_prefix
        self.log_group = log_group(self, "WebLogs", settings, "web")
        self.image_uri_tag = release_tag(self, deps.release_tag_parameter)
        self.web_image = ecs.ContainerImage.from_ecr_repository(deps.web_repository, self.image_uri_tag)
        self.service: ecs.FargateService | None = None
        self.target_group: elbv2.ApplicationTargetGroup | None = None
        self.app_runner: apprunner.CfnService | None = None

        self._release_task()
        if settings.web_platform == "apprunner":
            self._app_runner(vpc)
        else:
            self._fargate(vpc)

        acknowledge(
            self,
            "IAM5",
            "S3 object grants are limited to the static and recordings buckets' objects; X-Ray and "
            "PutMetricData (namespace-limited) have no resource-level permissions; the execution "
            "role's ECR/Logs grants are CDK defaults scoped to the repository and log group.",
            ANY_RESOURCE,
            bucket_objects_finding(settings.static_bucket_name),
            bucket_objects_finding(settings.recordings_bucket_name),
        )
        acknowledge(
            self,
            "ECS2",
            "Only non-secret configuration is in the environment; secrets come from SSM and "
            "Secrets Manager through the task definition's secrets.",
        )

    def _roles(self, name: str) -> tuple[iam.Role, iam.Role]:
        principal = iam.ServicePrincipal("ecs-tasks.amazonaws.com")
        return (
            iam.Role(self, f"{name.title()}TaskRole", role_name=f"{self.prefix}-{name}-task", assumed_by=principal),
            iam.Role(
                self, f"{name.title()}ExecutionRole", role_name=f"{self.prefix}-{name}-exec", assumed_by=principal
            ),
        )

    def _task(self, name: str, cpu: int, memory: int) -> ecs.FargateTaskDefinition:
        task_role, execution_role = self._roles(name)
        return ecs.FargateTaskDefinition(
            self,
            f"{name.title()}Task",
            family=f"{self.prefix}-{name}",
            cpu=cpu,
            memory_limit_mib=memory,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            task_role=task_role,
            execution_role=execution_role,
        )

    def _release_task(self) -> None:
        """`migrate --noinput` by default; the deploy workflow overrides the command for collectstatic."""
        task = self._task("release", 512, 1024)
        add_app_container(
            task,
            name="release",
            image=self.web_image,
            environment=app_environment(self.settings, self.deps, self.data, "web", [self.settings.web_host]),
            secrets=app_secrets(self, self.settings, self.data.db_secret),
            group=self.log_group,
            command=["python", "manage.py", "migrate", "--noinput"],
            health_path=None,
        )
        grant_static_files(task.task_role, self.settings)
        grant_recordings(task.task_role, self.settings, RECORDING_READER_ACTIONS)  # purge_calls runs here
        self.release_task = task
        CfnOutput(self, "ReleaseTaskFamily", value=task.family)

    def _fargate(self, vpc: ec2.IVpc) -> None:
        settings = self.settings
        # The bridge stack's cluster (by name) and HTTPS listener (through SSM): no export to strand when the
        # web platform switches (voiceops_cdk.links).
        cluster = ecs.Cluster.from_cluster_attributes(
            self, "Cluster", cluster_name=settings.cluster_name, vpc=vpc, security_groups=[]
        )
        listener = elbv2.ApplicationListener.from_application_listener_attributes(
            self,
            "Listener",
            listener_arn=links.read(self, settings, "alb-https-listener-arn"),
            security_group=self.sgs.alb,
        )
        task = self._task("web", 512, 1024)
        add_app_container(
            task,
            name="web",
            image=self.web_image,
            environment=app_environment(settings, self.deps, self.data, "web", [settings.web_host]),
            secrets=app_secrets(self, settings, self.data.db_secret),
            group=self.log_group,
            # The dashboard's live WebSocket gets the same polite shutdown as calls, shorter.
            stop_timeout_s=30,
        )
        add_otel_sidecar(task, self.log_group)
        allow_metrics(task)
        grant_static_files(task.task_role, self.settings)
        grant_recordings(task.task_role, settings, RECORDING_READER_ACTIONS)

        self.service = ecs.FargateService(
            self,
            "WebService",
            service_name=settings.service_name("web"),
            cluster=cluster,
            task_definition=task,
            desired_count=settings.web_min_tasks,
            security_groups=[self.sgs.web],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=Duration.seconds(60),
        )
        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "WebTargets",
            vpc=vpc,
            port=APP_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[self.service.load_balancer_target(container_name="web", container_port=APP_PORT)],
            deregistration_delay=Duration.seconds(30),
            health_check=elbv2.HealthCheck(path="/healthz", healthy_http_codes="200", interval=Duration.seconds(15)),
        )
        elbv2.ApplicationListenerRule(
            self,
            "WebHost",
            listener=listener,
            priority=WEB_RULE_PRIORITY,
            conditions=[elbv2.ListenerCondition.host_headers([settings.web_host])],
            action=elbv2.ListenerAction.forward([self.target_group]),
        )
        scaling = self.service.auto_scale_task_count(
            min_capacity=settings.web_min_tasks, max_capacity=max(settings.web_min_tasks, 4)
        )
        scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=60)
        links.publish(self, settings, "web-target-group-full-name", self.target_group.target_group_full_name)
        CfnOutput(self, "WebServiceName", value=self.service.service_name)

    def _app_runner(self, vpc: ec2.IVpc) -> None:
        settings = self.settings
        connector = apprunner.CfnVpcConnector(
            self,
            "VpcConnector",
            vpc_connector_name=f"{self.prefix}-web",
            subnets=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids,
            security_groups=[self.sgs.web.security_group_id],
        )
        access_role = iam.Role(
            self,
            "AppRunnerAccessRole",
            role_name=f"{self.prefix}-web-apprunner-access",
            assumed_by=iam.ServicePrincipal("build.apprunner.amazonaws.com"),
        )
        self.deps.web_repository.grant_pull(access_role)
        instance_role = iam.Role(
            self,
            "AppRunnerInstanceRole",
            role_name=f"{self.prefix}-web-apprunner-instance",
            assumed_by=iam.ServicePrincipal("tasks.apprunner.amazonaws.com"),
        )
        grant_static_files(instance_role, settings)
        grant_recordings(instance_role, settings, RECORDING_READER_ACTIONS)
        self.data.db_secret.grant_read(instance_role)
        instance_role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadStageSecrets",
                actions=["ssm:GetParameters"],
                resources=[ssm_parameter_arn(settings, name) for name in SECRET_NAMES],
            )
        )
        tracing = apprunner.CfnObservabilityConfiguration(
            self,
            "Tracing",
            observability_configuration_name=f"{self.prefix}-web",
            trace_configuration=apprunner.CfnObservabilityConfiguration.TraceConfigurationProperty(vendor="AWSXRAY"),
        )
        # OTEL_EXPORTER_OTLP_ENDPOINT stays: with the observability configuration below, App Runner runs an
        # ADOT collector that the app reaches on localhost:4317, and tracing only starts when it is set
        # (calls.tracing). https://docs.aws.amazon.com/apprunner/latest/dg/monitor-xray.html
        environment = app_environment(settings, self.deps, self.data, "web", [settings.web_host, ".awsapprunner.com"])
        environment["OTEL_METRICS_EXPORTER"] = "none"  # App Runner's collector takes traces only
        instance_role.add_to_policy(
            iam.PolicyStatement(
                sid="XRayTraces",
                actions=list(XRAY_WRITE_ACTIONS),
                resources=["*"],  # X-Ray has no resource-level permissions for these
            )
        )
        secrets = {name: ssm_parameter_arn(settings, name) for name in SECRET_NAMES}
        secrets["DB_SECRET"] = self.data.db_secret.secret_arn  # whole RDS secret JSON; the entrypoint parses it
        self.app_runner = apprunner.CfnService(
            self,
            "WebService",
            service_name=f"{self.prefix}-web",
            source_configuration=apprunner.CfnService.SourceConfigurationProperty(
                auto_deployments_enabled=False,  # the deploy workflow releases explicitly
                authentication_configuration=apprunner.CfnService.AuthenticationConfigurationProperty(
                    access_role_arn=access_role.role_arn
                ),
                image_repository=apprunner.CfnService.ImageRepositoryProperty(
                    image_identifier=f"{self.deps.web_repository.repository_uri}:{self.image_uri_tag}",
                    image_repository_type="ECR",
                    image_configuration=apprunner.CfnService.ImageConfigurationProperty(
                        port=str(APP_PORT),
                        runtime_environment_variables=[
                            apprunner.CfnService.KeyValuePairProperty(name=k, value=v)
                            for k, v in sorted(environment.items())
                        ],
                        runtime_environment_secrets=[
                            apprunner.CfnService.KeyValuePairProperty(name=k, value=v)
                            for k, v in sorted(secrets.items())
                        ],
                    ),
                ),
            ),
            instance_configuration=apprunner.CfnService.InstanceConfigurationProperty(
                cpu="1 vCPU", memory="2 GB", instance_role_arn=instance_role.role_arn
            ),
            network_configuration=apprunner.CfnService.NetworkConfigurationProperty(
                egress_configuration=apprunner.CfnService.EgressConfigurationProperty(
                    egress_type="VPC", vpc_connector_arn=connector.attr_vpc_connector_arn
                ),
                ingress_configuration=apprunner.CfnService.IngressConfigurationProperty(is_publicly_accessible=True),
            ),
            health_check_configuration=apprunner.CfnService.HealthCheckConfigurationProperty(
                protocol="HTTP", path="/healthz", interval=10, timeout=5, healthy_threshold=1, unhealthy_threshold=3
            ),
            observability_configuration=apprunner.CfnService.ServiceObservabilityConfigurationProperty(
                observability_enabled=True,
                observability_configuration_arn=tracing.attr_observability_configuration_arn,
            ),
        )
        self.app_runner.node.add_dependency(access_role)
        self._app_runner_domain(self.app_runner)
        CfnOutput(self, "WebServiceUrl", value=f"https://{self.app_runner.attr_service_url}")
        CfnOutput(self, "WebServiceArn", value=self.app_runner.attr_service_arn)

    def _app_runner_domain(self, service: apprunner.CfnService) -> None:
        """admin.<domain> on App Runner, not on the ALB. CloudFormation has no resource for App Runner custom
        domains, so a custom resource calls AssociateCustomDomain (DisassociateCustomDomain on delete); with a
        hosted zone, admin.<domain> is a CNAME to the DNS target it returns. App Runner then asks for
        certificate validation records (`aws apprunner describe-custom-domains`, docs/deploy.md)."""
        settings = self.settings
        service_arn = service.attr_service_arn
        target = {"ServiceArn": service_arn, "DomainName": settings.web_host}
        domain = cr.AwsCustomResource(
            self,
            "AdminDomain",
            on_create=cr.AwsSdkCall(
                service="AppRunner",
                action="associateCustomDomain",
                parameters={**target, "EnableWWWSubdomain": False},
                physical_resource_id=cr.PhysicalResourceId.of(settings.web_host),
                output_paths=["DNSTarget"],
            ),
            on_delete=cr.AwsSdkCall(service="AppRunner", action="disassociateCustomDomain", parameters=target),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["apprunner:AssociateCustomDomain", "apprunner:DisassociateCustomDomain"],
                        resources=[service_arn],
                    )
                ]
            ),
            install_latest_aws_sdk=False,
        )
        acknowledge(
            self,
            "IAM4",
            "The custom resource's provider function (CDK's AwsCustomResource) logs with the AWS-managed basic "
            "Lambda execution policy; its own calls are limited to this App Runner service.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        )
        dns_target = domain.get_response_field("DNSTarget")
        CfnOutput(self, "AdminDomainTarget", value=dns_target)
        zone = hosted_zone(self, settings)
        if zone is not None:
            route53.CnameRecord(
                self, "AdminRecord", zone=zone, record_name=f"{settings.web_host}.", domain_name=dns_target
            )
