"""The webhook's metrics as CloudWatch Embedded Metric Format: one JSON line on stdout per request that
counts something. Lambda ships stdout to CloudWatch Logs, which turns the line into data points (no API
call, no credentials, nothing added to the caller's wait). Off in local mode, where stdout is a terminal.

Metrics (namespace METRICS_NAMESPACE, dimension Stage; use Sum): `WebhookCallsReceived`,
`WebhookSignatureFailures`, `WebhookErrors` (the caller heard an apology, or a status could not be stored).
"""

from __future__ import annotations

import json
import sys
import time

from django.conf import settings

CALLS_RECEIVED = "WebhookCallsReceived"
SIGNATURE_FAILURES = "WebhookSignatureFailures"
ERRORS = "WebhookErrors"


def emf_line(namespace: str, stage: str, counts: dict[str, int]) -> str:
    return json.dumps({
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Stage"]],
                "Metrics": [{"Name": name, "Unit": "Count"} for name in counts],
            }],
        },
        "Stage": stage,
        "Component": "webhook",
        **counts,
    })


def count(*names: str) -> None:
    """Add one to each named metric (one EMF line); nothing in local mode."""
    if settings.DEBUG:
        return
    sys.stdout.write(emf_line(settings.METRICS_NAMESPACE, settings.STAGE, dict.fromkeys(names, 1)) + "\n")
    sys.stdout.flush()
