"""The names of the metrics the bridge and the webhook publish as CloudWatch EMF lines, as the code spells them
(bridge/metrics.py, lambda_webhook/metrics.py). The CDK app cannot import the Django code, so the names are
repeated here; tests/test_metric_names.py reads those two files and fails when the two sides differ."""

from __future__ import annotations


class Bridge:
    """bridge/metrics.py: dimension Stage on every metric, plus the one named per metric (see there)."""

    ACTIVE_CALLS = "ActiveCalls"
    CALLS_STARTED = "CallsStarted"
    CALLS_ENDED = "CallsEnded"
    OPENAI_CONNECT_MS = "OpenAIConnectMs"
    TIME_TO_FIRST_AGENT_AUDIO_MS = "TimeToFirstAgentAudioMs"
    REPLY_LATENCY_MS = "ReplyLatencyMs"
    BARGE_INS = "BargeIns"
    TOOL_LATENCY_MS = "ToolLatencyMs"
    TOOL_ERRORS = "ToolErrors"
    UPSTREAM_ERRORS = "UpstreamErrors"
    FRAMES_DROPPED = "FramesDropped"
    STAGE = "Stage"
    END_REASON = "EndReason"  # on CallsEnded
    ENGINE = "Engine"  # on OpenAIConnectMs
    DIRECTION = "Direction"  # on FramesDropped


class Webhook:
    """lambda_webhook/metrics.py: dimension Stage."""

    CALLS_RECEIVED = "WebhookCallsReceived"
    SIGNATURE_FAILURES = "WebhookSignatureFailures"
    ERRORS = "WebhookErrors"


UPSTREAM_ERROR_REASON = "upstream_error"  # Call.EndReason.UPSTREAM_ERROR (calls/models.py)
