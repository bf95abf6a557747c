"""The Lambda entry point: Mangum around the slim webhook app, fed API Gateway HTTP API (v2) events, in a
fresh interpreter as on a cold start."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from calls import services
from calls.models import AgentConfig, Call
from tests.conftest import ACCOUNT_SID, TWILIO_TOKEN
from tests.servers import ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC = "https://voice.example.com"

RUNNER = r"""
import base64, json, sys
import lambda_webhook.handler as h
events = json.loads(sys.stdin.read())
out = [h.handler(e, None) for e in events]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"bridge", "channels", "daphne", "websockets"}
               or m.startswith("django.contrib.admin"))
print(json.dumps({"responses": out, "heavy_modules": heavy}))
"""


def api_gateway_v2_event(path: str, params: dict[str, str], signature: str) -> dict:
    body = urlencode(params)
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/x-www-form-urlencoded", "host": "abc123.execute-api.eu-west-1"
                    ".amazonaws.com", "x-twilio-signature": signature, "x-forwarded-proto": "https",
                    "x-forwarded-port": "443", "user-agent": "TwilioProxy/1.1"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "voice.example.com",
            "domainPrefix": "voice", "stage": "$default", "requestId": "req-1", "routeKey": "$default",
            "time": "24/Nov/2026:16:00:00 +0000", "timeEpoch": 1795536000000,
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "54.172.60.1",
                     "userAgent": "TwilioProxy/1.1"},
        },
        "body": body, "isBase64Encoded": False,
    }


def run_handler(events: list[dict]) -> dict:
    env = subprocess_env(
        VOICEOPS_COMPONENT="webhook", TWILIO_AUTH_TOKEN=TWILIO_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        PUBLIC_WEBHOOK_BASE_URL=PUBLIC, BRIDGE_PUBLIC_URL="wss://bridge.example.com/media-stream",
        OPENAI_API_KEY="sk-test", DJANGO_DEBUG="0", DJANGO_SECRET_KEY="x" * 20 + "abcdefghijklmnopqrstuvwxyz0123",
        DJANGO_ALLOWED_HOSTS="*",
    )
    done = subprocess.run([sys.executable, "-c", RUNNER], cwd=ROOT, env=env, input=json.dumps(events),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    *emf, last = done.stdout.strip().splitlines()
    return {**json.loads(last), "stderr": done.stderr, "emf": [json.loads(line) for line in emf]}


def test_mangum_handler_answers_signed_voice_webhook_with_twiml():
    config = AgentConfig.objects.create(name="Default", instructions="Hi.", is_default=True)
    config.tools.set(services.ensure_builtin_tools())
    params = {"CallSid": "CA" + "a" * 32, "AccountSid": ACCOUNT_SID, "From": "+14155550100",
              "To": "+15005550006", "CallStatus": "ringing"}
    good = RequestValidator(TWILIO_TOKEN).compute_signature(f"{PUBLIC}/twilio/voice", params)
    result = run_handler([
        api_gateway_v2_event("/twilio/voice", params, good),
        api_gateway_v2_event("/twilio/voice", {**params, "CallSid": "CA" + "b" * 32}, "forged"),
    ])
    ok, forged = result["responses"]
    assert ok["statusCode"] == 200, ok
    assert ok["headers"]["content-type"].startswith("text/xml")
    assert "<Connect" in ok["body"] and 'name="token"' in ok["body"]
    assert forged["statusCode"] == 403
    assert list(Call.objects.values_list("twilio_call_sid", flat=True)) == ["CA" + "a" * 32]
    # The slim slice keeps its cold start small: no bridge, Channels, daphne or admin imported.
    assert result["heavy_modules"] == []


def test_api_gateway_routes_every_webhook_path():
    """The CDK app routes exactly the paths the webhook URLconf serves: a path without a route is a 404 that
    Twilio turns into an error message to the caller (the CDK app cannot import Django, hence the parse)."""
    import ast
    from pathlib import Path

    from lambda_webhook import urls

    source = (Path(__file__).resolve().parents[2] / "deploy/cdk/voiceops_cdk/webhook.py").read_text()
    assignment = next(node for node in ast.parse(source).body
                      if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "WEBHOOK_PATHS")
    routed = set(ast.literal_eval(assignment.value))
    assert routed == {f"/{pattern.pattern}" for pattern in urls.urlpatterns}


def test_production_logs_are_json_lines_with_the_call_sid_and_emf_metrics():
    config = AgentConfig.objects.create(name="Default", instructions="Hi.", is_default=True)
    config.tools.set(services.ensure_builtin_tools())
    params = {"CallSid": "CA" + "c" * 32, "AccountSid": ACCOUNT_SID, "From": "+14155550100",
              "To": "+15005550006", "CallStatus": "ringing"}
    good = RequestValidator(TWILIO_TOKEN).compute_signature(f"{PUBLIC}/twilio/voice", params)
    result = run_handler([
        api_gateway_v2_event("/twilio/voice", params, good),
        api_gateway_v2_event("/twilio/voice", {**params, "CallSid": "CA" + "d" * 32}, "forged"),
    ])

    lines = [json.loads(line) for line in result["stderr"].splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    answered = [line for line in lines if line.get("call_sid") == params["CallSid"]]
    assert answered and answered[0]["logger"] == "lambda_webhook.views" and answered[0]["level"] == "INFO"
    assert {line.get("request_id") for line in lines if line["logger"] == "lambda_webhook.views"} == {"req-1"}
    assert any("refused" in line["message"] and line["level"] == "WARNING" for line in lines)
    for secret in ("+14155550100", TWILIO_TOKEN, "sk-test"):
        assert secret not in result["stderr"]
    counted = [{m["Name"] for m in e["_aws"]["CloudWatchMetrics"][0]["Metrics"]} for e in result["emf"]]
    assert counted == [{"WebhookCallsReceived"}, {"WebhookSignatureFailures"}]
    assert [(e["Stage"], e.get("WebhookCallsReceived"), e.get("WebhookSignatureFailures")) for e in result["emf"]] \
        == [("local", 1, None), ("local", None, 1)]
