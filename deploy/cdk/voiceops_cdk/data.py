"""Data: RDS PostgreSQL (+ RDS Proxy for the Lambda) and node-based ElastiCache Redis.

Redis is a node-based replication group with cluster mode disabled: channels_redis uses multi-key
commands (Lua scripts over several keys) that ElastiCache Serverless and cluster mode reject with
CROSSSLOT.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_rds as rds
from constructs import Construct

from voiceops_cdk import links
from voiceops_cdk.config import DeploySettings
from voiceops_cdk.nag import acknowledge
from voiceops_cdk.network import REDIS_PORT, SecurityGroups

DB_NAME = "voiceops"
DB_USER = "voiceops"
# The major version only, with auto minor upgrade on: RDS applies minor versions in the maintenance window,
# and the template never names one, so a later update cannot try to move the instance back to an older
# minor (which RDS refuses). A major upgrade is a deliberate change of this constant.
POSTGRES_VERSION = rds.PostgresEngineVersion.VER_17


# Memory of the db.t4g sizes used here; PostgreSQL's max_connections on RDS is
# LEAST(DBInstanceClassMemory / 9531392, 5000) (RDS default parameter group).
_T4G_MEMORY_GIB = {ec2.InstanceSize.MICRO: 1, ec2.InstanceSize.MEDIUM: 4}


def db_instance_size(settings: DeploySettings) -> ec2.InstanceSize:
    return ec2.InstanceSize.MEDIUM if settings.is_prod else ec2.InstanceSize.MICRO


def db_max_connections(settings: DeploySettings) -> int:
    """Roughly RDS's default max_connections for the instance (a little memory goes to the OS)."""
    return min(int(_T4G_MEMORY_GIB[db_instance_size(settings)] * 1024**3 * 0.95 / 9531392), 5000)


class DataStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        vpc: ec2.IVpc,
        security_groups: SecurityGroups,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        sgs = security_groups.immutable_in(self)
        isolated = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

        self.database = rds.DatabaseInstance(
            self,
            "Postgres",
            engine=rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION),
            instance_type=ec2.InstanceType.of(ec2.InstanceClass.T4G, db_instance_size(settings)),
            vpc=vpc,
            vpc_subnets=isolated,
            security_groups=[sgs.database],
            database_name=DB_NAME,
            # The password is generated into Secrets Manager and never appears in a template. No
            # punctuation, so the entrypoint can put it in DATABASE_URL without surprises.
            credentials=rds.Credentials.from_generated_secret(
                DB_USER,
                secret_name=f"/voiceops/{settings.stage}/db-credentials",
                exclude_characters=" %+~`#$&*()|[]{}:;<>?!'/@\"\\,=^.",
            ),
            storage_encrypted=True,
            allocated_storage=20,
            max_allocated_storage=200,
            multi_az=settings.is_prod,
            backup_retention=Duration.days(14 if settings.is_prod else 3),
            preferred_backup_window="03:00-04:00",
            deletion_protection=settings.is_prod,
            removal_policy=RemovalPolicy.SNAPSHOT if settings.is_prod else RemovalPolicy.DESTROY,
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=["postgresql", "upgrade"],
            enable_performance_insights=True,
            monitoring_interval=Duration.seconds(60),
            iam_authentication=True,
            parameter_group=rds.ParameterGroup(
                self,
                "Params",
                engine=rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION),
                parameters={"rds.force_ssl": "1", "log_min_duration_statement": "500"},
            ),
        )
        # cfn-lint's W3691 reads a bare major as a deprecated version; RDS takes it: "If a major version is
        # specified but a minor version is not, Amazon RDS defaults to a recent release of the major version"
        # (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/PostgreSQL.Concepts.General.DBVersions.html;
        # cfn-lint issue #3849). Only this resource skips it, so a deprecated minor elsewhere still warns.
        self.database.node.default_child.add_metadata(  # type: ignore[union-attr]
            "cfn-lint", {"config": {"ignore_checks": ["W3691"]}}
        )
        self.db_secret = self.database.secret
        acknowledge(
            self.database,
            "IAM4",
            "Enhanced monitoring's role uses the AWS-managed policy RDS publishes for exactly this purpose.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
        )
        assert self.db_secret is not None
        acknowledge(
            self.database.node.find_child("Secret"),
            "SMG4",
            "ECS injects the password at task start and tasks hold connections "
            "for whole calls; rotation is a runbook step (docs/deploy.md) followed by a rolling deploy.",
        )

        # The Lambda scales out in bursts; the proxy pools its connections so PostgreSQL is not swamped.
        self.proxy = self.database.add_proxy(
            "Proxy",
            secrets=[self.db_secret],
            vpc=vpc,
            vpc_subnets=isolated,
            security_groups=[sgs.db_proxy],
            require_tls=True,
            iam_auth=False,
            debug_logging=False,
            max_connections_percent=50,
            idle_client_timeout=Duration.minutes(10),
        )

        subnet_group = elasticache.CfnSubnetGroup(
            self,
            "RedisSubnets",
            description="voiceops Redis in isolated subnets",
            subnet_ids=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )
        self.redis = elasticache.CfnReplicationGroup(
            self,
            "Redis",
            replication_group_description=f"voiceops {settings.stage} channel layer",
            engine="redis",
            engine_version="7.1",
            cache_node_type="cache.t4g.small" if settings.is_prod else "cache.t4g.micro",
            cluster_mode="disabled",
            num_node_groups=1,
            replicas_per_node_group=1 if settings.is_prod else 0,
            automatic_failover_enabled=settings.is_prod,
            multi_az_enabled=settings.is_prod,
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            port=REDIS_PORT,
            cache_subnet_group_name=subnet_group.ref,
            security_group_ids=[sgs.redis.security_group_id],
            snapshot_retention_limit=1,
        )
        # TLS is on, so clients use rediss://.
        self.redis_url = f"rediss://{self.redis.attr_primary_end_point_address}:{REDIS_PORT}/0"

        # For the app, webhook and alarm stacks, through SSM (voiceops_cdk.links): replacing the database,
        # Redis or the proxy changes these values, which an export in use would refuse.
        for key, value in {
            "db-host": self.database.db_instance_endpoint_address,
            "db-port": self.database.db_instance_endpoint_port,
            "db-secret-arn": self.db_secret.secret_arn,
            "db-instance-id": self.database.instance_identifier,
            "db-proxy-endpoint": self.proxy.endpoint,
            "redis-url": self.redis_url,
            "redis-replication-group-id": self.redis.ref,
        }.items():
            links.publish(self, settings, key, value)

        acknowledge(
            self.redis, "AEC5", "The default port is harmless here: only the bridge and web security groups reach it."
        )
        acknowledge(
            self.redis,
            "AEC6",
            "No AUTH token: TLS in transit, isolated subnets, and a security group open only to "
            "the bridge and web tasks. The channel layer holds only short-lived call events.",
        )
        if not settings.is_prod:
            acknowledge(self.redis, "AEC4", "dev runs a single node to save cost; prod is Multi-AZ with failover.")
            acknowledge(self.database, "RDS3", "dev is single-AZ to save cost; prod is Multi-AZ.")
            acknowledge(
                self.database,
                "RDS10",
                "dev databases are disposable; prod has deletion protection and snapshots on delete.",
            )
        acknowledge(
            self.database,
            "RDS11",
            "The default port is reachable only from the app, release and proxy security groups.",
        )
