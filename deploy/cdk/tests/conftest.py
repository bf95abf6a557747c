"""Synthesizes the app once per variant (with cdk-nag on, so a new unacknowledged finding fails every test)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")

from voiceops_cdk.app import VoiceOps, build

VARIANTS = {
    "dev-fargate": {"stage": "dev", "domain": "dev.voice.example.com"},
    "prod-apprunner": {
        "stage": "prod",
        "domain": "voice.example.com",
        "web_platform": "apprunner",
        "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
        "hosted_zone_name": "voice.example.com",
        "slack_workspace_id": "T0123ABCD",
        "slack_channel_id": "C0123ABCD",
    },
}


class Synth:
    def __init__(self, voiceops: VoiceOps) -> None:
        self.voiceops = voiceops
        self.settings = voiceops.settings
        self.assembly = voiceops.app.synth()  # runs the cdk-nag validation plugin
        self._templates: dict[str, Template] = {}

    def template(self, boundary: str) -> Template:
        if boundary not in self._templates:
            self._templates[boundary] = Template.from_stack(self.voiceops.stacks[boundary])
        return self._templates[boundary]


@pytest.fixture(scope="session")
def synths() -> dict[str, Synth]:
    return {name: Synth(build(context)) for name, context in VARIANTS.items()}


@pytest.fixture(scope="session")
def dev(synths: dict[str, Synth]) -> Synth:
    return synths["dev-fargate"]


@pytest.fixture(scope="session")
def prod(synths: dict[str, Synth]) -> Synth:
    return synths["prod-apprunner"]


@pytest.fixture(scope="session", params=list(VARIANTS))
def each(request: pytest.FixtureRequest, synths: dict[str, Synth]) -> Synth:
    return synths[request.param]
