"""Static files (S3 behind CloudFront with Origin Access Control), the private call-recordings bucket and the
access-log bucket. Buckets that log to it live here: only within one stack does CDK limit the log bucket's
grant to S3 logging by the source bucket's ARN (aws:SourceArn); from another stack it would be left open."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from constructs import Construct

from voiceops_cdk.config import DeploySettings
from voiceops_cdk.nag import acknowledge


class StaticStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploySettings, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = RemovalPolicy.RETAIN if settings.is_prod else RemovalPolicy.DESTROY

        # Access logs of the ALB, CloudFront and the static bucket. CloudFront standard logging needs
        # ACLs on its target bucket, so this one keeps object ownership "preferred".
        self.log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(365 if settings.is_prod else 30),
                    noncurrent_version_expiration=Duration.days(7),
                )
            ],
            removal_policy=removal,
            auto_delete_objects=not settings.is_prod,
        )
        acknowledge(self.log_bucket, "S1", "This is the access-log bucket itself.")

        self.bucket = s3.Bucket(
            self,
            "StaticFiles",
            bucket_name=settings.static_bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="s3-static/",
            lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=Duration.days(30))],
            removal_policy=removal,
            auto_delete_objects=not settings.is_prod,
        )
        self.recordings = recordings_bucket(self, settings, self.log_bucket, removal)
        self.distribution = cloudfront.Distribution(
            self,
            "Cdn",
            comment=f"voiceops {settings.stage} static files",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.CORS_ALLOW_ALL_ORIGINS,
            ),
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=self.log_bucket,
            log_file_prefix="cloudfront/",
        )
        acknowledge(self.distribution, "CFR1", "Static CSS/JS for the staff dashboard; no geo restriction is wanted.")
        acknowledge(
            self.distribution,
            "CFR2",
            "Public, cache-only static assets from a private bucket; a WAF adds cost and no protection.",
        )
        acknowledge(
            self.distribution,
            "CFR4",
            "Served on the default *.cloudfront.net name, whose certificate fixes the TLS policy.",
        )


def recordings_bucket(
    scope: Construct, settings: DeploySettings, log_bucket: s3.IBucket, removal: RemovalPolicy
) -> s3.Bucket:
    """One WAV per recorded call (docs/recordings.md), read by staff through short-lived signed URLs only.

    Unversioned, so purge_calls and the admin really delete a recording (no noncurrent copy stays behind).
    Only the bridge, web and release roles get object rights, by this bucket's name (runtime.grant_recordings).
    """
    retention_days = settings.recordings_retention_days
    bucket = s3.Bucket(
        scope,
        "Recordings",
        bucket_name=settings.recordings_bucket_name,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=False,
        server_access_logs_bucket=log_bucket,
        server_access_logs_prefix="s3-recordings/",
        lifecycle_rules=[
            s3.LifecycleRule(id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
            *(
                [s3.LifecycleRule(id="ExpireRecordings", expiration=Duration.days(retention_days))]
                if retention_days
                else []
            ),
        ],
        removal_policy=removal,
        auto_delete_objects=not settings.is_prod,
    )
    bucket.node.default_child.add_metadata(  # type: ignore[union-attr]
        "checkov",
        {
            "skip": [
                {
                    "id": "CKV_AWS_21",
                    "comment": "Unversioned on purpose: a purged or deleted recording must really be gone.",
                }
            ]
        },
    )
    return bucket
