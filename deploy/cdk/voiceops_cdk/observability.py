"""Alarms → SNS → Slack (AWS Chatbot), and the metric filter that counts bridge errors."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_chatbot as chatbot
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from voiceops_cdk.bridge import active_calls_metric
from voiceops_cdk.config import METRIC_NAMESPACE, DeploySettings
from voiceops_cdk.nag import acknowledge

BRIDGE_ERRORS_METRIC = "BridgeErrors"


@dataclass
class Watched:
    alb: elbv2.IApplicationLoadBalancer
    target_groups: dict[str, elbv2.ApplicationTargetGroup]
    bridge_log_group: logs.ILogGroup
    webhook: lambda_.IFunction
    database: rds.IDatabaseInstance


class ObservabilityStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: DeploySettings, watched: Watched, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        key = kms.Key(self, "AlarmTopicKey", enable_key_rotation=True, description="voiceops alarm topic")
        # CloudWatch must be able to publish to the encrypted topic.
        key.grant_encrypt_decrypt(iam.ServicePrincipal("cloudwatch.amazonaws.com"))
        self.topic = sns.Topic(
            self, "Alarms", topic_name=f"{settings.name_prefix}-alarms", master_key=key, enforce_ssl=True
        )
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        self.chatbot: chatbot.SlackChannelConfiguration | None = None
        if settings.slack_workspace_id:
            self.chatbot = chatbot.SlackChannelConfiguration(
                self,
                "Slack",
                slack_channel_configuration_name=f"{settings.name_prefix}-alarms",
                slack_workspace_id=settings.slack_workspace_id,
                slack_channel_id=settings.slack_channel_id,
                notification_topics=[self.topic],
                logging_level=chatbot.LoggingLevel.ERROR,
                guardrail_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("ReadOnlyAccess")],
            )
            self.chatbot.role.add_managed_policy(  # type: ignore[union-attr]
                iam.ManagedPolicy.from_aws_managed_policy_name("CloudWatchReadOnlyAccess")
            )
            acknowledge(
                self.chatbot,
                "IAM4",
                "Chatbot renders alarm graphs with the AWS-managed read-only CloudWatch policy.",
                "Policy::arn:<AWS::Partition>:iam::aws:policy/CloudWatchReadOnlyAccess",
            )

        action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        def alarm(
            name: str,
            metric: cloudwatch.IMetric,
            threshold: float,
            description: str,
            periods: int = 1,
            comparison: cloudwatch.ComparisonOperator | None = None,
        ) -> None:
            created = metric.create_alarm(
                self,
                name,
                alarm_name=f"{settings.name_prefix}-{name}",
                alarm_description=description,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=comparison or cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(action)
            created.add_ok_action(action)
            self.alarms[name] = created

        five_min = Duration.minutes(5)
        alb_metrics = watched.alb.metrics
        alarm(
            "alb-5xx",
            alb_metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=five_min),
            10,
            "The load balancer returned 5xx (no healthy target, or target failures)",
        )
        for name, target_group in watched.target_groups.items():
            alarm(
                f"{name}-target-5xx",
                target_group.metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=five_min),
                10,
                f"The {name} tasks answered 5xx",
            )
            alarm(
                f"{name}-unhealthy-targets",
                target_group.metrics.unhealthy_host_count(period=Duration.minutes(1), statistic="Maximum"),
                1,
                f"A {name} task fails its health check",
                periods=3,
            )

        logs.MetricFilter(
            self,
            "BridgeErrorFilter",
            log_group=watched.bridge_log_group,
            metric_namespace=METRIC_NAMESPACE,
            metric_name=BRIDGE_ERRORS_METRIC,
            filter_pattern=logs.FilterPattern.any_term(" ERROR ", " CRITICAL ", "Traceback"),
            metric_value="1",
            default_value=0,
        )
        alarm(
            "bridge-errors",
            cloudwatch.Metric(
                namespace=METRIC_NAMESPACE, metric_name=BRIDGE_ERRORS_METRIC, statistic="Sum", period=five_min
            ),
            5,
            "The bridge logged errors (upstream failures, protocol errors)",
        )
        alarm(
            "webhook-errors",
            watched.webhook.metric_errors(period=five_min, statistic="Sum"),
            3,
            "The Twilio webhook Lambda failed",
        )
        alarm(
            "webhook-throttles",
            watched.webhook.metric_throttles(period=five_min, statistic="Sum"),
            1,
            "The webhook hit its reserved concurrency: calls are being rejected",
        )
        alarm(
            "rds-cpu", watched.database.metric_cpu_utilization(period=five_min), 80, "PostgreSQL CPU is high", periods=3
        )
        alarm(
            "active-calls-near-capacity",
            active_calls_metric(settings, "Average"),
            settings.active_calls_alarm_threshold,
            f"Average calls per bridge task is near capacity ({settings.calls_per_task}); scaling is maxed "
            "out or lagging",
            periods=3,
        )
