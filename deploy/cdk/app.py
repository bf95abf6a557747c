#!/usr/bin/env python3
"""Entry point for the CDK CLI (`cdk synth`, `cdk deploy` in deploy/cdk)."""

from voiceops_cdk.app import build

build().app.synth()
