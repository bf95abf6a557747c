"""The metric names the alarms and the dashboard use are the names the code publishes: read from the code's
own constants (bridge/metrics.py, lambda_webhook/metrics.py, calls/models.py), which the CDK app cannot import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from voiceops_cdk.metric_names import UPSTREAM_ERROR_REASON, Bridge, Webhook

REPO = Path(__file__).resolve().parents[3]


def string_constants(relative_path: str) -> dict[str, str]:
    """Module-level `NAME = "text"` assignments."""
    tree = ast.parse((REPO / relative_path).read_text())
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id.isupper() and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def names(cls: type) -> dict[str, str]:
    return {key: value for key, value in vars(cls).items() if key.isupper()}


def test_bridge_metric_and_dimension_names_match_the_code() -> None:
    assert names(Bridge) == string_constants("bridge/metrics.py")


def test_webhook_metric_names_match_the_code() -> None:
    assert names(Webhook) == string_constants("lambda_webhook/metrics.py")


def test_the_upstream_error_end_reason_matches_the_model() -> None:
    models = (REPO / "calls/models.py").read_text()
    assert re.search(rf'^\s+UPSTREAM_ERROR = "{UPSTREAM_ERROR_REASON}",', models, re.MULTILINE)
