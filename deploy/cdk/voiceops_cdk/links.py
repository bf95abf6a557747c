"""Values one stack hands to another, as SSM parameters under /voiceops/<stage>/infra/ (never Fn::ImportValue).

CloudFormation refuses to change or delete an export that another stack imports ("Export ... cannot be
updated as it is in use"), so an import from a stack whose resources can be replaced or switched (the
database, Redis, the RDS Proxy, the web platform, the ALB and its target groups) makes that replacement fail.
The producer writes an SSM parameter instead; the consumer reads it at deploy time through a CloudFormation
parameter of type AWS::SSM::Parameter::Value<String> (no synth-time lookup), and `cdk deploy` re-reads it on
every deploy of the consumer (the CLI never skips a stack with SSM-typed parameters). Stack order is kept
with explicit dependencies (voiceops_cdk.app).

Only the foundation stacks (Ci, Network, Static), whose exported resources are named or never replaced,
still export to others; tests/test_links.py holds that rule.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from voiceops_cdk.config import DeploySettings

FOUNDATION_STACKS = ("ci", "network", "static")


def link_name(settings: DeploySettings, key: str) -> str:
    # A sub-path: the webhook Lambda loads /voiceops/<stage>/* non-recursively, so these are not app config.
    return f"{settings.ssm_prefix}infra/{key}"


def publish(scope: Construct, settings: DeploySettings, key: str, value: str) -> ssm.StringParameter:
    return ssm.StringParameter(
        Stack.of(scope),
        "Link" + "".join(part.title() for part in key.split("-")),
        parameter_name=link_name(settings, key),
        string_value=value,
        description=f"voiceops {settings.stage}: {key}, for the stacks that use it (voiceops_cdk/links.py)",
    )


def read(scope: Construct, settings: DeploySettings, key: str) -> str:
    """The value, resolved by CloudFormation when the reading stack deploys."""
    return ssm.StringParameter.value_for_string_parameter(Stack.of(scope), link_name(settings, key))
