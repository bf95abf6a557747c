"""cdk-nag 3.x acknowledgements: one helper so every suppression names its rule (and finding) and a reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str, *findings: str) -> None:
    """Acknowledge AwsSolutions-<rule> on scope and below.

    Rules that report findings (IAM4, IAM5) are acknowledged finding by finding, e.g.
    `acknowledge(role, "IAM5", why, "Resource::*")`, so a new wildcard still fails synth.
    """
    if len(reason) < 25:
        raise ValueError(f"an acknowledgement of {rule} needs a real reason, not {reason!r}")
    ids = [f"AwsSolutions-{rule}[{finding}]" for finding in findings] or [f"AwsSolutions-{rule}"]
    Validations.of(scope).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))


def arn_finding(service: str, resource: str) -> str:
    """An IAM5 finding for an ARN built from the stack's partition, region and account."""
    return f"Resource::arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:{resource}"


def bucket_objects_finding(bucket_name: str) -> str:
    """An IAM5 finding for the objects of a bucket named `<prefix>-<AWS::AccountId>-<region>`."""
    return f"Resource::arn:<AWS::Partition>:s3:::{bucket_name.replace(Aws.ACCOUNT_ID, '<AWS::AccountId>')}/*"


ANY_RESOURCE = "Resource::*"
