"""Delivery: ECR repositories, the release artifact bucket, the release tag, and the GitHub OIDC deploy role.

Deployed first. The GitHub deploy workflow pushes images tagged with the commit SHA, uploads the webhook zip
as `webhook/<sha>.zip`, rolls the services, then records the SHA in `/voiceops/<stage>/release/IMAGE_TAG`.
The service stacks read that parameter at deploy time (never at synth), so a later `cdk deploy` keeps
running what CI released instead of rolling it back.

The release-tag parameter is deliberately NOT a resource of any stack: CloudFormation writes the template's
value on every update of a resource it owns, which would put back a placeholder tag whose image does not
exist. The first release creates it (docs/deploy.md), the workflow overwrites it; CloudFormation only reads it.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from voiceops_cdk.config import DeploySettings
from voiceops_cdk.nag import ANY_RESOURCE, acknowledge, arn_finding

DEPLOYABLES = ("bridge", "web")
# The deploy job outlives the default 1-hour OIDC session: the bridge deployment waits for the longest call
# (up to 60 min) to end on the old tasks. The workflow asks for exactly this (role-duration-seconds).
DEPLOY_SESSION_S = 2 * 3600
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"


def release_tag_parameter_name(settings: DeploySettings) -> str:
    # Under a sub-path: the Lambda loads /voiceops/<stage>/* non-recursively, so this is not app config.
    return f"{settings.ssm_prefix}release/IMAGE_TAG"


class CiStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploySettings, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = RemovalPolicy.RETAIN if settings.is_prod else RemovalPolicy.DESTROY
        prefix = settings.name_prefix

        self.repositories: dict[str, ecr.Repository] = {}
        for name in DEPLOYABLES:
            self.repositories[name] = ecr.Repository(
                self,
                f"{name.title()}Repository",
                repository_name=f"voiceops-{settings.stage}/{name}",
                image_scan_on_push=True,
                image_tag_mutability=ecr.TagMutability.IMMUTABLE,
                encryption=ecr.RepositoryEncryption.KMS,
                lifecycle_rules=[ecr.LifecycleRule(max_image_count=50, description="keep the last 50 releases")],
                removal_policy=removal,
                empty_on_delete=not settings.is_prod,
            )

        self.artifacts = s3.Bucket(
            self,
            "ReleaseArtifacts",
            bucket_name=settings.artifacts_bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            lifecycle_rules=[s3.LifecycleRule(prefix="webhook/", expiration=Duration.days(180))],
            removal_policy=removal,
            auto_delete_objects=not settings.is_prod,
        )
        acknowledge(
            self.artifacts,
            "S1",
            "Holds only CI-built Lambda zips written by the deploy role; CloudTrail records every access.",
        )

        if settings.github_oidc_provider_arn:
            provider_arn = settings.github_oidc_provider_arn
        else:
            # The native CloudFormation resource: no custom-resource Lambda. One per account: pass
            # -c github_oidc_provider_arn=... when the account already has it.
            provider = iam.CfnOIDCProvider(
                self,
                "GithubOidc",
                url=f"https://{GITHUB_OIDC_HOST}",
                client_id_list=["sts.amazonaws.com"],
            )
            provider_arn = provider.attr_arn

        self.deploy_role = iam.Role(
            self,
            "GithubDeployRole",
            role_name=f"{prefix}-github-deploy",
            description="Assumed by GitHub Actions (OIDC) to release voiceops; no long-lived keys.",
            max_session_duration=Duration.seconds(DEPLOY_SESSION_S),
            assumed_by=iam.FederatedPrincipal(
                provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com",
                        # Only jobs running in this repository's GitHub environment named after the stage.
                        f"{GITHUB_OIDC_HOST}:sub": f"repo:{settings.github_repository}:environment:{settings.stage}",
                    }
                },
                assume_role_action="sts:AssumeRoleWithWebIdentity",
            ),
        )
        self._grant_release_permissions(settings)

        CfnOutput(self, "DeployRoleArn", value=self.deploy_role.role_arn)
        CfnOutput(self, "ArtifactBucketName", value=self.artifacts.bucket_name)
        for name, repo in self.repositories.items():
            CfnOutput(self, f"{name.title()}RepositoryUri", value=repo.repository_uri)

    def _grant_release_permissions(self, settings: DeploySettings) -> None:
        role = self.deploy_role
        prefix = settings.name_prefix

        def arn(service: str, resource: str) -> str:
            return f"arn:{Aws.PARTITION}:{service}:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"

        for repo in self.repositories.values():
            repo.grant_pull_push(role)
            # deploy/push_image.sh skips the build when the tag exists (tags are immutable).
            repo.grant(role, "ecr:DescribeImages")
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WebhookZips",
                # PutObject to upload; GetObject because `lambda update-function-code --s3-bucket/--s3-key`
                # reads the object with the caller's permissions.
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[f"arn:{Aws.PARTITION}:s3:::{settings.artifacts_bucket_name}/webhook/*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReleaseTag",
                actions=["ssm:PutParameter", "ssm:GetParameter"],
                resources=[
                    f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter"
                    f"{release_tag_parameter_name(settings)}"
                ],
            )
        )

        role.add_to_policy(
            iam.PolicyStatement(
                sid="EcsTaskDefinitions",
                # These two ECS actions support no resource-level permissions.
                actions=["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"],
                resources=["*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EcsServices",
                actions=["ecs:UpdateService", "ecs:DescribeServices"],
                resources=[arn(service="ecs", resource=f"service/{prefix}/{prefix}-*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EcsReleaseTask",
                actions=["ecs:RunTask"],
                resources=[arn(service="ecs", resource=f"task-definition/{prefix}-release:*")],
                conditions={"ArnEquals": {"ecs:cluster": arn(service="ecs", resource=f"cluster/{prefix}")}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EcsReleaseTaskStatus",
                actions=["ecs:DescribeTasks"],
                resources=[arn(service="ecs", resource=f"task/{prefix}/*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PassTaskRoles",
                actions=["iam:PassRole"],
                resources=[f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{prefix}-*"],
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WebhookCode",
                actions=["lambda:UpdateFunctionCode", "lambda:GetFunction", "lambda:GetFunctionConfiguration"],
                resources=[arn(service="lambda", resource=f"function:{prefix}-webhook")],
            )
        )
        if settings.web_platform == "apprunner":
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="AppRunnerWeb",
                    actions=[
                        "apprunner:UpdateService",
                        "apprunner:DescribeService",
                        "apprunner:ListOperations",
                    ],
                    resources=[arn(service="apprunner", resource=f"service/{prefix}-web/*")],
                )
            )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadStackOutputs",
                actions=["cloudformation:DescribeStacks"],
                resources=[arn(service="cloudformation", resource=f"stack/VoiceOps-{settings.stage}-*/*")],
            )
        )
        acknowledge(
            role,
            "IAM5",
            "Each wildcard is scoped to this stage's names (service names, release task revisions, task ids, "
            "the role prefix, webhook/ keys, stack names); ecr:GetAuthorizationToken and the two ECS task "
            "definition actions support no resource-level permissions.",
            ANY_RESOURCE,
            arn_finding("cloudformation", f"stack/VoiceOps-{settings.stage}-*/*"),
            arn_finding("ecs", f"service/{prefix}/{prefix}-*"),
            arn_finding("ecs", f"task-definition/{prefix}-release:*"),
            arn_finding("ecs", f"task/{prefix}/*"),
            f"Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/{prefix}-*",
            f"Resource::arn:<AWS::Partition>:s3:::{prefix}-artifacts-<AWS::AccountId>-{settings.region}/webhook/*",
            arn_finding("apprunner", f"service/{prefix}-web/*"),
        )
