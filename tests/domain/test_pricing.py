"""calls.pricing against hand-computed figures (the sums are written out next to each expectation)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from calls import pricing
from calls.pricing import PriceError
from tests.conftest import DETAILED_USAGE

D = Decimal


@pytest.fixture(scope="module")
def table() -> pricing.PriceTable:
    return pricing.load_prices()


def test_every_line_of_the_table_has_a_source_and_a_date(table):
    assert len(table.lines) >= 40
    for line in table.lines:
        assert line.source.startswith("https://"), line.name
        assert date.fromisoformat(line.date) <= date(2026, 12, 31), line.name
    for model in ("gpt-realtime-2.1", "gpt-realtime-2.1-mini", "gpt-realtime-2", "gpt-realtime-1.5", "gpt-realtime"):
        assert set(table.realtime_model(model)) == set(pricing.TOKEN_CATEGORIES)
    assert table.live_model("gpt-live-1") == table.live_model("gpt-live-1.1") == D("0.05")
    # Prices given per 1M / 10k units are stored per unit.
    assert table.aws["lambda_requests"] == D("0.0000002")
    assert table.aws["cloudfront_https_requests"] == D("0.000001")


def test_the_mini_model_costs_about_a_third(table):
    full, mini = table.realtime_model("gpt-realtime-2.1"), table.realtime_model("gpt-realtime-2.1-mini")
    assert D("0.25") < mini["audio_input"] / full["audio_input"] < D("0.4")
    assert D("0.25") < mini["audio_output"] / full["audio_output"] < D("0.4")


def test_no_other_module_holds_a_price():
    """The price table is the one place: no dollar figure per token/minute/hour elsewhere in calls/."""
    from pathlib import Path

    calls_dir = Path(pricing.__file__).parent
    money = re.compile(r"\$\d|_PER_1M|PRICE_")
    offenders = [
        str(path.relative_to(calls_dir)) for path in calls_dir.rglob("*.py")
        if "simulators" not in path.parts and path.name != "pricing.py" and money.search(path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[aws.us-east-1]\nnat = { usd = 1.0, date = "2026-01-01" }\n[twilio.US]\n', "needs a source"),
        ('[aws.us-east-1]\nnat = { usd = 1.0, source = "https://x", date = "Jan 1" }\n[twilio.US]\n', "YYYY-MM-DD"),
        ('[aws.us-east-1]\nnat = { usd = -1.0, source = "https://x", date = "2026-01-01" }\n[twilio.US]\n', "≥ 0"),
        ('[aws.us-east-1]\nnat = { usd = "1", source = "https://x", date = "2026-01-01" }\n[twilio.US]\n',
         "not a number"),
        ('[aws.us-east-1]\nnat = { source = "https://x", date = "2026-01-01" }\n[twilio.US]\n', "missing usd"),
        ("[aws.us-east-1\n", "not valid TOML"),
        ("[twilio.US]\n", "no AWS prices for region 'us-east-1'"),
    ],
)
def test_a_malformed_table_is_a_clear_error(text, message):
    with pytest.raises(PriceError, match=re.escape(message)):
        pricing.parse_prices(text)


def test_another_region_is_an_error_naming_the_ones_there_are():
    with pytest.raises(PriceError, match=r"no AWS prices for region 'eu-west-1' .*it has: us-east-1"):
        pricing.load_prices("eu-west-1")


def test_unknown_models_are_errors_naming_the_known_ones(table):
    with pytest.raises(PriceError, match=r"Realtime model 'gpt-4o-realtime-preview'.*gpt-realtime-2.1"):
        table.realtime_model("gpt-4o-realtime-preview")
    with pytest.raises(PriceError, match="GPT-Live model 'gpt-live-9'"):
        pricing.call_cost(table, engine="live", model="gpt-live-9", usage={}, duration_s=60)
    with pytest.raises(PriceError, match="unknown engine"):
        pricing.call_cost(table, engine="carrier-pigeon", model="x", usage={}, duration_s=60)


# --- one call -----------------------------------------------------------------------------------------


def test_realtime_call_cost_is_tokens_at_the_models_prices_plus_transcription(table):
    # Uncached: text 300, audio 400; cached: text 100, audio 200; output: text 100, audio 400.
    # 300x4 + 100x0.4 + 100x24 + 400x32 + 200x0.4 + 400x64 = 42,120 micro-$ = $0.04212.
    tokens_only = pricing.call_cost(table, engine="realtime", model="gpt-realtime-2.1", usage=DETAILED_USAGE,
                                    duration_s=60)
    assert tokens_only == D("0.04212")
    # Transcription of the caller's assumed 40 % of 60 s = 0.4 min x $0.003.
    with_transcription = pricing.call_cost(
        table, engine="realtime", model="gpt-realtime-2.1", usage=DETAILED_USAGE, duration_s=60,
        transcription_model="gpt-4o-mini-transcribe",
    )
    assert with_transcription == D("0.04212") + D("0.0012")
    # Reported transcription seconds win: 30 s = 0.5 min x $0.003.
    reported = pricing.call_cost(
        table, engine="realtime", model="gpt-realtime-2.1", usage={**DETAILED_USAGE, "transcription": {"seconds": 30}},
        duration_s=60, transcription_model="gpt-4o-mini-transcribe",
    )
    assert reported == D("0.04212") + D("0.0015")
    # The mini model: 300x0.6 + 100x0.06 + 100x2.4 + 400x10 + 200x0.3 + 400x20 = 12,486 micro-$.
    mini = pricing.call_cost(
        table, engine="realtime", model="gpt-realtime-2.1-mini", usage=DETAILED_USAGE, duration_s=60
    )
    assert mini == D("0.012486")


def test_a_realtime_call_without_usage_costs_nothing(table):
    cost = pricing.call_cost(table, engine="realtime", model="gpt-realtime-2.1", usage={}, duration_s=300,
                             transcription_model="gpt-4o-mini-transcribe")
    assert cost == 0


def test_live_call_cost_is_billed_seconds_at_the_minute_rate_plus_backend_tokens(table):
    # 90 billed seconds = 1.5 min x $0.05 = $0.075, not the 120 s the call lasted.
    assert pricing.call_cost(table, engine="live", model="gpt-live-1.1", usage={"seconds": 90.0},
                             duration_s=120) == D("0.075")
    # No usage reported: the call's duration, 120 s = $0.10.
    assert pricing.call_cost(table, engine="live", model="gpt-live-1", usage={}, duration_s=120) == D("0.10")
    # Backend gpt-5-mini: 6,000 uncached x 0.25 + 4,000 cached x 0.025 + 1,000 out x 2 = 3,600 micro-$.
    backend = {"model": "gpt-5-mini", "input_tokens": 10_000, "input_tokens_details": {"cached_tokens": 4000},
               "output_tokens": 1000}
    cost = pricing.call_cost(table, engine="live", model="gpt-live-1.1", usage={"seconds": 90, "backend": backend},
                             duration_s=120)
    assert cost == D("0.075") + D("0.0036")
    # The config's backend model when the usage names none: gpt-4.1-mini, 6,000x0.4 + 4,000x0.1 + 1,000x1.6.
    del backend["model"]
    cost = pricing.call_cost(table, engine="live", model="gpt-live-1.1", usage={"seconds": 90, "backend": backend},
                             duration_s=120, backend_model="gpt-4.1-mini")
    assert cost == D("0.075") + D("0.0044")


# --- a month ------------------------------------------------------------------------------------------


def totals(table, deploy, work) -> dict[str, Decimal]:
    return pricing.group_totals(pricing.monthly_estimate(table, deploy, work))


def items(table, deploy, work) -> dict[str, Decimal]:
    return {line.item: line.usd for line in pricing.monthly_estimate(table, deploy, work)}


def test_dev_baseline_matches_the_cdk_stage(table):
    work = pricing.Workload(calls=3000, minutes=D(3))
    lines = items(table, pricing.deployment("dev"), work)
    assert lines["NAT gateways"] == D("32.85")  # 1 x 730 h x $0.045
    assert lines["public IPv4 (NAT + ALB)"] == D("10.95")  # (1 NAT + 2 ALB nodes) x 730 h x $0.005
    assert "interface endpoints" not in lines  # the CDK context choice, off by default
    assert lines["ALB"] == D("16.425")  # 730 h x $0.0225
    assert lines["Fargate bridge (1 vCPU/2 GB)"] == D("36.0401")  # 730 x (0.04048 + 2 x 0.004445)
    assert lines["Fargate web (0.5 vCPU/1 GB)"] == D("18.02005")  # 730 x (0.5 x 0.04048 + 0.004445)
    assert lines["RDS db.t4g.micro"] == D("11.68")  # 730 x $0.016
    assert lines["RDS storage (gp2)"] == D("2.3")  # 20 GB x $0.115
    assert lines["RDS Proxy"] == D("21.9")  # at least 2 vCPUs x 730 h x $0.015
    assert lines["ElastiCache cache.t4g.micro"] == D("11.68")
    assert lines["CloudWatch alarms"] == D("1.0")  # 10 x $0.10
    assert lines["CloudWatch metrics"] == D("3.6")  # 12 x $0.30
    assert lines["CloudWatch logs (no calls)"] == D("0.5")
    assert lines["KMS key + DB secret"] == D("1.4")
    assert lines["CloudFront (dashboard static)"] == D("0.0355")  # 10,000 x $0.000001 + 0.3 GB x $0.085
    assert totals(table, pricing.deployment("dev"), work)[pricing.FIXED] == D("168.38065")


def test_prod_baseline_doubles_what_prod_doubles(table):
    work = pricing.Workload(calls=3000, minutes=D(3))
    lines = items(table, pricing.deployment("prod"), work)
    assert lines["NAT gateways"] == D("65.7")  # one per AZ
    assert lines["public IPv4 (NAT + ALB)"] == D("14.6")  # 2 NAT + 2 ALB
    assert lines["Fargate bridge (1 vCPU/2 GB)"] == D("72.0802")  # 2 tasks minimum
    assert lines["RDS db.t4g.medium Multi-AZ"] == D("94.9")  # 2 x 730 x $0.065
    assert lines["RDS storage (gp2)"] == D("4.6")
    assert lines["ElastiCache cache.t4g.small"] == D("46.72")  # primary + replica x 730 x $0.032
    assert totals(table, pricing.deployment("prod"), work)[pricing.FIXED] == D("380.0008")


def test_interface_endpoints_when_on_are_billed_per_service_and_az(table):
    work = pricing.Workload(calls=1, minutes=D(1))
    with_endpoints = items(table, pricing.deployment("dev", endpoints=True), work)
    assert with_endpoints["interface endpoints"] == D("87.60")  # 6 services x 2 AZs x 730 h x $0.01


def test_variable_aws_from_the_audio_on_the_wire(table):
    work = pricing.Workload(calls=3000, minutes=D(3))
    lines = items(table, pricing.deployment("dev"), work)
    # 9,000 call-minutes x 60 s x (1 + 0.5 agent share) x 12,800 B/s = 10.368 GB.
    assert lines["NAT data processed"] == D("10.368") * D("0.045")
    assert lines["data transfer out"] == D("10.368") * D("0.09")
    assert lines["ALB LCUs (bytes processed)"] == D("10.368") * D("0.008")
    # 6,000 requests x $0.0000002 + 6,000 x 0.5 GB x 0.2 s x $0.0000166667.
    assert lines["Lambda webhook"] == D("0.0012") + 600 * D("0.0000166667")
    assert lines["API Gateway (HTTP API)"] == D("0.006")
    assert lines["CloudWatch logs (calls)"] == D("0.015")  # 3,000 x 10 kB = 0.03 GB x $0.50
    assert lines["Fargate bridge above minimum (79 calls/task)"] == 0


def test_bridge_tasks_scale_with_concurrent_calls_in_the_busy_hours(table):
    deploy = pricing.deployment("prod", calls_per_task=40)
    # 1,000,000 calls x 3 min = 50,000 h over 220 busy hours = 227.3 concurrent calls; 24 a task at the 60 %
    # target → 10 tasks, 8 above the 2 minimum, for 220 h: 1,760 task-hours x $0.04937.
    work = pricing.Workload(calls=1_000_000, minutes=D(3))
    assert pricing.bridge_tasks_needed(deploy, work) == 10
    assert items(table, deploy, work)["Fargate bridge above minimum (40 calls/task)"] == D("86.8912")
    # The default, 79 calls a task (47.4 at target), needs 5; a capacity of 100 (60 at target) needs 4.
    assert pricing.bridge_tasks_needed(pricing.deployment("prod"), work) == 5
    assert pricing.bridge_tasks_needed(pricing.deployment("prod", calls_per_task=100), work) == 4


def test_twilio_bills_whole_minutes_by_direction(table):
    work = pricing.Workload(calls=3000, minutes=D("2.5"), outbound_share=D("0.5"))
    lines = items(table, pricing.deployment("dev"), work)
    # 2.5 min is billed as 3: 9,000 minutes, half each way.
    assert lines["inbound minutes"] == D("38.25")  # 4,500 x $0.0085
    assert lines["outbound minutes"] == D("63.0")  # 4,500 x $0.014
    assert lines["Media Streams"] == D("36.0")  # 9,000 x $0.004
    assert lines["phone numbers"] == D("1.15")


def test_openai_by_engine(table):
    deploy = pricing.deployment("dev")
    live = items(table, deploy, pricing.Workload(calls=3000, minutes=D(3), engine="live", model="gpt-live-1.1"))
    assert live["gpt-live-1.1 session"] == D("450.00")  # 9,000 min x $0.05
    # 4,500 delegations x (3,000 in x $0.25 + 150 out x $2) per 1M.
    assert live["backend gpt-5-mini"] == D("4.725")
    realtime = items(table, deploy, pricing.Workload(calls=1, minutes=D(3)))
    # One 3-minute call, 12 responses, 500 prompt tokens: 6,000 text in, 14,580 audio in, 1,800 audio out.
    assert realtime["gpt-realtime-2.1 text input"] == D("0.024")
    assert realtime["gpt-realtime-2.1 audio input"] == D("0.46656")
    assert realtime["gpt-realtime-2.1 audio output"] == D("0.1152")
    assert realtime["transcription gpt-4o-mini-transcribe"] == D("0.0036")  # 1.2 caller minutes x $0.003
    measured = items(table, deploy, pricing.Workload(calls=10, minutes=D(2), openai_usd=D("1.23")))
    assert measured["recorded usage (realtime gpt-realtime-2.1)"] == D("1.23")


def test_openai_per_minute_for_the_config_page(table):
    # (0.024 + 0.46656 + 0.1152) / 3 min + 40 % x $0.003 = $0.20312.
    assert pricing.openai_per_minute(table, "realtime", "gpt-realtime-2.1") == D("0.20312")
    # (6,000 x 0.6 + 14,580 x 10 + 1,800 x 20) / 1M / 3 + 0.0012 = $0.0630.
    assert pricing.openai_per_minute(table, "realtime", "gpt-realtime-2.1-mini") == D("0.0630")
    # $0.05 + 0.5 delegations x 1,050 micro-$.
    assert pricing.openai_per_minute(table, "live", "gpt-live-1.1") == D("0.050525")
