"""Whole-app rules: stack boundaries, no synth-time lookups, no secrets in templates, nag is really on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aws_cdk import aws_s3 as s3
from conftest import Synth
from voiceops_cdk.app import BOUNDARIES, build, stack_name

SECRETISH = re.compile(r"(SECRET_KEY|AUTH_TOKEN|API_KEY|PASSWORD)$")


def test_one_stack_per_boundary(each: Synth) -> None:
    assert set(each.voiceops.stacks) == set(BOUNDARIES)
    for boundary, stack in each.voiceops.stacks.items():
        assert stack.stack_name == stack_name(each.settings, boundary)
        assert stack.account.startswith("${Token"), "stacks must not pin an account (no lookups at synth)"


def test_synth_needs_no_lookups(each: Synth) -> None:
    manifest = json.loads((Path(each.assembly.directory) / "manifest.json").read_text())
    assert "missing" not in manifest, f"synth asked for context lookups: {manifest['missing']}"
    assert manifest["artifacts"], "the cloud assembly is empty"


def test_no_secret_value_or_secret_name_in_plain_environment(each: Synth) -> None:
    for boundary in BOUNDARIES:
        rendered = each.template(boundary).to_json()
        for logical_id, resource in rendered.get("Resources", {}).items():
            props = resource.get("Properties", {})
            env_lists = [c.get("Environment", []) for c in props.get("ContainerDefinitions", [])]
            for env in env_lists:
                for item in env:
                    assert not SECRETISH.search(item["Name"]), (
                        f"{boundary}/{logical_id} has {item['Name']} in plain env"
                    )
            variables = props.get("Environment", {}).get("Variables", {})
            for name in variables:
                assert not SECRETISH.search(name), f"{boundary}/{logical_id} has {name} in plain env"


def test_every_log_group_has_retention(each: Synth) -> None:
    for boundary in BOUNDARIES:
        for logical_id, group in each.template(boundary).find_resources("AWS::Logs::LogGroup").items():
            assert group["Properties"].get("RetentionInDays"), f"{boundary}/{logical_id} keeps logs forever"


def test_cdk_nag_fails_synth_on_an_unacknowledged_finding() -> None:
    voiceops = build({"stage": "dev"})
    s3.Bucket(voiceops.static, "CarelessBucket")  # no SSL enforcement, no access logs
    with pytest.raises(RuntimeError, match="AwsSolutions-S10"):
        voiceops.app.synth()


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"stage": "qa"}, "stage"),
        ({"web_platform": "lightsail"}, "web_platform"),
        ({"drain_timeout_s": 300}, "drain_timeout_s"),
        ({"domain": "not a domain"}, "domain"),
        ({"hosted_zone_id": "Z1"}, "hosted_zone"),
        ({"interface_endpoints": "maybe"}, "interface_endpoints"),
        ({"webhook_reserved_concurrency": -1}, "webhook_reserved_concurrency"),
        ({"webhook_rate_limit": 50, "webhook_burst_limit": 10}, "webhook_rate_limit"),
    ],
)
def test_bad_context_fails_before_anything_is_built(context: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(context, nag=False)
