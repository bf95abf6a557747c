"""The ADOT Python Lambda layer (AWSOpenTelemetryDistroPython) per region.

AWS publishes it from a different account in some regions and at a different version in each, so one
`arn:...:${AWS::Region}:615299751070:...:16` is wrong almost everywhere. Source of this table (x86_64 and
arm64 share the ARN): the AWS Distro for OpenTelemetry Lambda layer list,
https://aws-otel.github.io/docs/getting-started/lambda/lambda-python (the site's config,
aws-otel/aws-otel.github.io src/config/lambdaLayerArns.js). Refresh it when AWS publishes new versions;
`-c adot_lambda_layer_arn=...` overrides it for one deployment.
"""

from __future__ import annotations

LAYER_NAME = "AWSOpenTelemetryDistroPython"

# region -> (publishing account, layer version)
ADOT_PYTHON_LAYERS: dict[str, tuple[str, int]] = {
    "af-south-1": ("904233096616", 19),
    "ap-east-1": ("888577020596", 19),
    "ap-northeast-1": ("615299751070", 22),
    "ap-northeast-2": ("615299751070", 22),
    "ap-northeast-3": ("615299751070", 21),
    "ap-south-1": ("615299751070", 22),
    "ap-south-2": ("796973505492", 19),
    "ap-southeast-1": ("615299751070", 21),
    "ap-southeast-2": ("615299751070", 22),
    "ap-southeast-3": ("039612877180", 19),
    "ap-southeast-4": ("713881805771", 19),
    "ap-southeast-5": ("152034782359", 10),
    "ap-southeast-7": ("980416031188", 10),
    "ca-central-1": ("615299751070", 22),
    "ca-west-1": ("595944127152", 10),
    "cn-north-1": ("440179912924", 10),
    "cn-northwest-1": ("440180067931", 10),
    "eu-central-1": ("615299751070", 22),
    "eu-central-2": ("156041407956", 19),
    "eu-north-1": ("615299751070", 22),
    "eu-south-1": ("257394471194", 19),
    "eu-south-2": ("490004653786", 19),
    "eu-west-1": ("615299751070", 22),
    "eu-west-2": ("615299751070", 22),
    "eu-west-3": ("615299751070", 22),
    "il-central-1": ("746669239226", 19),
    "me-central-1": ("739275441131", 19),
    "me-south-1": ("980921751758", 19),
    "mx-central-1": ("610118373846", 10),
    "sa-east-1": ("615299751070", 22),
    "us-east-1": ("615299751070", 25),
    "us-east-2": ("615299751070", 22),
    "us-west-1": ("615299751070", 29),
    "us-west-2": ("615299751070", 29),
}


def adot_python_layer_arn(region: str) -> str:
    """The layer's ARN in `region`; a clear error for a region AWS does not publish it in (or this table lacks)."""
    try:
        account, version = ADOT_PYTHON_LAYERS[region]
    except KeyError:
        raise ValueError(
            f"no ADOT Python Lambda layer is known for region {region!r}: pass -c adot_lambda_layer_arn=<ARN from "
            "https://aws-otel.github.io/docs/getting-started/lambda/lambda-python> or add the region to "
            "voiceops_cdk/adot.py"
        ) from None
    partition = "aws-cn" if region.startswith("cn-") else "aws"
    return f"arn:{partition}:lambda:{region}:{account}:layer:{LAYER_NAME}:{version}"
