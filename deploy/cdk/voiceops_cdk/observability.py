"""Alarms → SNS → Slack (AWS Chatbot) and/or e-mail, and the metric filter that counts bridge errors.

The alarms watch what fails in practice, not only what AWS counts as an error: the webhook Lambda runs Django
behind Mangum, which turns an exception into a 500 *response* (a successful invocation, so Lambda's Errors
stays at 0): API Gateway's 5xx and latency catch it. ECS services whose running tasks stay below the desired
count (a crash loop, no capacity) page too, as do Redis (the channel layer) and RDS running out of CPU, memory,
storage or connections.

The calls themselves are watched through the metrics the bridge and the webhook publish (EMF lines, names in
voiceops_cdk.metric_names): upstream (OpenAI) errors, calls ended by them, slow first answers and failing
tools page; a dashboard (`<prefix>-calls`) shows every call metric.

Everything watched is found by name or through SSM (voiceops_cdk.links), never by an import, so the watched
stacks can replace or drop resources (switching web_platform drops the web target group) without an export
in use blocking them.
"""

from __future__ import annotations

from aws_cdk import Annotations, Duration, Fn, Stack
from aws_cdk import aws_chatbot as chatbot
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from voiceops_cdk import links
from voiceops_cdk.bridge import active_calls_metric
from voiceops_cdk.config import METRIC_NAMESPACE, DeploySettings
from voiceops_cdk.data import db_max_connections
from voiceops_cdk.metric_names import UPSTREAM_ERROR_REASON, Bridge, Webhook
from voiceops_cdk.nag import acknowledge

BRIDGE_ERRORS_METRIC = "BridgeErrors"
NO_RECIPIENT_WARNING = (
    "No slack_workspace_id/slack_channel_id nor alarm_email in context: the alarms publish to the SNS topic "
    "and reach nobody. Set one of them (docs/deploy.md, Alarms)."
)
FIVE_MIN = Duration.minutes(5)
ONE_MIN = Duration.minutes(1)
GIB = 1024**3
FIRST_AUDIO_P90_ALARM_MS = 3000  # the caller hears silence this long after answering: the greeting is late


class ObservabilityStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploySettings, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
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
            self._slack()
        if not (settings.slack_workspace_id or settings.alarm_email):
            Annotations.of(self).add_warning_v2("voiceops:alarms-reach-nobody", NO_RECIPIENT_WARNING)

        self.action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._load_balancer()
        self._services()
        self._bridge_errors()
        self._webhook()
        self._database()
        self._redis()
        self._calls()
        self.dashboard = self._dashboard()
        self.alarm(
            "active-calls-near-capacity",
            active_calls_metric(settings, "Average"),
            settings.active_calls_alarm_threshold,
            f"Average calls per bridge task is near capacity ({settings.calls_per_task}); scaling is maxed "
            "out or lagging",
            periods=3,
        )

    def _slack(self) -> None:
        settings = self.settings
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

    def alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        periods: int = 1,
        comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    ) -> None:
        created = metric.create_alarm(
            self,
            name,
            alarm_name=f"{self.settings.name_prefix}-{name}",
            alarm_description=description,
            threshold=threshold,
            evaluation_periods=periods,
            comparison_operator=comparison,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        created.add_alarm_action(self.action)
        created.add_ok_action(self.action)
        self.alarms[name] = created

    def _load_balancer(self) -> None:
        settings = self.settings
        alb = links.read(self, settings, "alb-full-name")

        def alb_metric(name: str, statistic: str, period: Duration, **dimensions: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/ApplicationELB",
                metric_name=name,
                dimensions_map={"LoadBalancer": alb, **dimensions},
                statistic=statistic,
                period=period,
            )

        self.alarm(
            "alb-5xx",
            alb_metric("HTTPCode_ELB_5XX_Count", "Sum", FIVE_MIN),
            10,
            "The load balancer returned 5xx (no healthy target, or target failures)",
        )
        for kind in self._ecs_services():
            target_group = links.read(self, settings, f"{kind}-target-group-full-name")
            self.alarm(
                f"{kind}-target-5xx",
                alb_metric("HTTPCode_Target_5XX_Count", "Sum", FIVE_MIN, TargetGroup=target_group),
                10,
                f"The {kind} tasks answered 5xx",
            )
            self.alarm(
                f"{kind}-unhealthy-targets",
                alb_metric("UnHealthyHostCount", "Maximum", ONE_MIN, TargetGroup=target_group),
                1,
                f"A {kind} task fails its health check",
                periods=3,
            )

    def _ecs_services(self) -> list[str]:
        return ["bridge", "web"] if self.settings.web_platform == "fargate" else ["bridge"]

    def _services(self) -> None:
        """Container Insights (on for the cluster): fewer tasks running than desired for 5 minutes."""
        settings = self.settings
        for kind in self._ecs_services():

            def insight(name: str, kind: str = kind) -> cloudwatch.Metric:
                return cloudwatch.Metric(
                    namespace="ECS/ContainerInsights",
                    metric_name=name,
                    dimensions_map={"ClusterName": settings.cluster_name, "ServiceName": settings.service_name(kind)},
                    statistic="Average",
                    period=ONE_MIN,
                )

            self.alarm(
                f"{kind}-running-below-desired",
                cloudwatch.MathExpression(
                    expression="desired - running",
                    using_metrics={"desired": insight("DesiredTaskCount"), "running": insight("RunningTaskCount")},
                    period=ONE_MIN,
                    label=f"{kind} tasks missing",
                ),
                1,
                f"Fewer {kind} tasks run than desired (crash loop, failing health checks, no capacity)",
                periods=5,
            )

    def _bridge_errors(self) -> None:
        group = logs.LogGroup.from_log_group_name(self, "BridgeLogs", self.settings.log_group_name("bridge"))
        logs.MetricFilter(
            self,
            "BridgeErrorFilter",
            log_group=group,
            metric_namespace=METRIC_NAMESPACE,
            metric_name=BRIDGE_ERRORS_METRIC,
            filter_pattern=logs.FilterPattern.any_term(" ERROR ", " CRITICAL ", "Traceback"),
            metric_value="1",
            default_value=0,
        )
        self.alarm(
            "bridge-errors",
            cloudwatch.Metric(
                namespace=METRIC_NAMESPACE, metric_name=BRIDGE_ERRORS_METRIC, statistic="Sum", period=FIVE_MIN
            ),
            5,
            "The bridge logged errors (upstream failures, protocol errors)",
        )

    def _webhook(self) -> None:
        settings = self.settings
        function = lambda_.Function.from_function_name(self, "Webhook", settings.webhook_function_name)
        self.alarm(
            "webhook-errors",
            function.metric_errors(period=FIVE_MIN, statistic="Sum"),
            3,
            "The Twilio webhook Lambda failed outright (crash, timeout)",
        )
        self.alarm(
            "webhook-throttles",
            function.metric_throttles(period=FIVE_MIN, statistic="Sum"),
            1,
            "The webhook Lambda was throttled (account concurrency or its reserved concurrency): calls rejected",
        )
        api = {"ApiId": links.read(self, settings, "webhook-api-id"), "Stage": "$default"}
        self.alarm(
            "api-5xx",
            cloudwatch.Metric(
                namespace="AWS/ApiGateway", metric_name="5xx", dimensions_map=api, statistic="Sum", period=FIVE_MIN
            ),
            3,
            "The Twilio webhook answered 5xx: Django errors come back from Mangum as 500 responses (Lambda "
            "Errors does not count them), and Twilio plays its error message to the caller",
        )
        self.alarm(
            "api-latency",
            cloudwatch.Metric(
                namespace="AWS/ApiGateway", metric_name="Latency", dimensions_map=api, statistic="p90", period=FIVE_MIN
            ),
            5000,
            "The Twilio webhook is slow (p90 >= 5 s; Twilio gives up after 15 s): cold starts, database or proxy",
            periods=2,
        )

    def _database(self) -> None:
        settings = self.settings
        instance = {"DBInstanceIdentifier": links.read(self, settings, "db-instance-id")}

        def rds(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/RDS", metric_name=name, dimensions_map=instance, statistic=statistic, period=FIVE_MIN
            )

        below = cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD
        self.alarm("rds-cpu", rds("CPUUtilization", "Average"), 80, "PostgreSQL CPU is high", periods=3)
        self.alarm(
            "rds-free-storage",
            rds("FreeStorageSpace", "Minimum"),
            2 * GIB,
            "PostgreSQL has less than 2 GiB free (storage autoscaling at its maximum, or growing too fast)",
            comparison=below,
        )
        connections = int(db_max_connections(settings) * 0.8)
        self.alarm(
            "rds-connections",
            rds("DatabaseConnections", "Maximum"),
            connections,
            f"PostgreSQL connections near max_connections (alarm at {connections}, 80 %)",
            periods=2,
        )

    def _redis(self) -> None:
        """Per node: node ids are <replication group>-001 (-002 for the prod replica)."""
        settings = self.settings
        group = links.read(self, settings, "redis-replication-group-id")
        nodes = ["001", "002"] if settings.is_prod else ["001"]
        for node in nodes:

            def redis(name: str, statistic: str, node: str = node) -> cloudwatch.Metric:
                return cloudwatch.Metric(
                    namespace="AWS/ElastiCache",
                    metric_name=name,
                    dimensions_map={"CacheClusterId": Fn.join("-", [group, node])},
                    statistic=statistic,
                    period=FIVE_MIN,
                )

            self.alarm(
                f"redis-cpu-{node}",
                redis("EngineCPUUtilization", "Average"),
                80,
                "Redis (the channel layer) is CPU-bound: call events and the dashboard lag",
                periods=3,
            )
            self.alarm(
                f"redis-memory-{node}",
                redis("DatabaseMemoryUsagePercentage", "Maximum"),
                80,
                "Redis memory is nearly full: it will start evicting channel-layer messages",
                periods=2,
            )
            self.alarm(
                f"redis-evictions-{node}",
                redis("Evictions", "Sum"),
                1,
                "Redis evicted keys: channel-layer messages (call events) were lost",
            )

    # --- the calls (the bridge's and the webhook's own metrics) -------------------------------------------
    def call_metric(self, name: str, statistic: str = "Sum", period: Duration = FIVE_MIN, label: str | None = None,
                    **dimensions: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRIC_NAMESPACE,
            metric_name=name,
            dimensions_map={Bridge.STAGE: self.settings.stage, **dimensions},
            statistic=statistic,
            period=period,
            label=label,
        )

    def _calls(self) -> None:
        self.alarm(
            "upstream-errors",
            self.call_metric(Bridge.UPSTREAM_ERRORS),
            5,
            "OpenAI errors on calls (connect failures, dropped sessions, error events, failed responses): "
            ">= 5 in 5 minutes",
        )
        self.alarm(
            "calls-ended-by-upstream-error",
            self.call_metric(Bridge.CALLS_ENDED, **{Bridge.END_REASON: UPSTREAM_ERROR_REASON}),
            3,
            "Calls cut short because OpenAI failed (the caller heard an apology): >= 3 in 5 minutes",
        )
        self.alarm(
            "first-agent-audio-slow",
            self.call_metric(Bridge.TIME_TO_FIRST_AGENT_AUDIO_MS, "p90"),
            FIRST_AUDIO_P90_ALARM_MS,
            f"p90 time from stream start to the agent's first audio >= {FIRST_AUDIO_P90_ALARM_MS} ms for 15 "
            "minutes: callers wait in silence (OpenAI slow to connect or answer, bridge overloaded)",
            periods=3,
        )
        self.alarm(
            "tool-errors",
            self.call_metric(Bridge.TOOL_ERRORS),
            5,
            "HTTP tools failing during calls (timeouts, errors, refused addresses): >= 5 in 5 minutes",
        )

    def _search(self, name: str, dimension: str, statistic: str) -> cloudwatch.MathExpression:
        """One line per value of `dimension` (end reasons, engines, directions): no list to keep in step."""
        return cloudwatch.MathExpression(
            expression=(
                f"SEARCH('{{{METRIC_NAMESPACE},{Bridge.STAGE},{dimension}}} MetricName=\"{name}\" "
                f"{Bridge.STAGE}=\"{self.settings.stage}\"', '{statistic}', 300)"
            ),
            using_metrics={},
            label="",
            period=FIVE_MIN,
        )

    def _dashboard(self) -> cloudwatch.Dashboard:
        m = self.call_metric
        one = ONE_MIN

        def graph(title: str, left: list[cloudwatch.IMetric], unit: str = "") -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=left, width=8, height=6,
                                          left_y_axis=cloudwatch.YAxisProps(label=unit, show_units=False, min=0))

        def percentiles(name: str) -> list[cloudwatch.IMetric]:
            return [m(name, "p50", label="p50"), m(name, "p90", label="p90"), m(name, "p99", label="p99")]

        dashboard = cloudwatch.Dashboard(self, "CallsDashboard", dashboard_name=f"{self.settings.name_prefix}-calls")
        dashboard.add_widgets(
            graph("Active calls", [m(Bridge.ACTIVE_CALLS, "Sum", one, "all tasks"),
                                   m(Bridge.ACTIVE_CALLS, "Average", one, "per task")], "calls"),
            graph("Calls started / ended", [m(Bridge.CALLS_STARTED, label="started"),
                                            m(Bridge.CALLS_ENDED, label="ended")], "calls / 5 min"),
            graph("Calls ended by reason", [self._search(Bridge.CALLS_ENDED, Bridge.END_REASON, "Sum")],
                  "calls / 5 min"),
        )
        dashboard.add_widgets(
            graph("Time to first agent audio", percentiles(Bridge.TIME_TO_FIRST_AGENT_AUDIO_MS), "ms"),
            graph("Reply latency (end of the caller's turn to the answer's audio)",
                  percentiles(Bridge.REPLY_LATENCY_MS), "ms"),
            graph("OpenAI connect time (p90 by engine)",
                  [self._search(Bridge.OPENAI_CONNECT_MS, Bridge.ENGINE, "p90")], "ms"),
        )
        dashboard.add_widgets(
            graph("Upstream errors / barge-ins", [m(Bridge.UPSTREAM_ERRORS, label="upstream errors"),
                                                  m(Bridge.BARGE_INS, label="barge-ins")], "/ 5 min"),
            graph("Tools", [m(Bridge.TOOL_ERRORS, label="errors"),
                            m(Bridge.TOOL_LATENCY_MS, "p90", label="latency p90 (ms)")]),
            graph("Frames dropped by direction", [self._search(Bridge.FRAMES_DROPPED, Bridge.DIRECTION, "Sum")],
                  "frames / 5 min"),
        )
        dashboard.add_widgets(
            graph("Webhook", [m(Webhook.CALLS_RECEIVED, label="calls received"),
                              m(Webhook.SIGNATURE_FAILURES, label="signature failures"),
                              m(Webhook.ERRORS, label="errors")], "/ 5 min"),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=16, height=6),
        )
        return dashboard
