from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management.base import CommandError

from calls.pricing import TokenTally, forecast_tokens
from tests.conftest import DETAILED_USAGE

pytestmark = pytest.mark.django_db



def month(out: str) -> dict[str, tuple[Decimal, Decimal]]:
    """item → (quantity, USD) from the printed monthly table."""
    rows = {}
    for line in out.splitlines():
        match = re.match(r"^(AWS fixed|AWS variable|Twilio|OpenAI) +(.+?) {2,}([\d,.]+) \S+ +\$([\d,.]+)$", line)
        if match:
            rows[match.group(2)] = (Decimal(match.group(3).replace(",", "")), Decimal(match.group(4).replace(",", "")))
    return rows


def subtotals(out: str) -> dict[str, Decimal]:
    rows = {}
    for line in out.splitlines():
        match = re.match(r"^(AWS fixed|AWS variable|Twilio|OpenAI|monthly total) +\$([\d,.]+)$", line)
        if match:
            rows[match.group(1)] = Decimal(match.group(2).replace(",", ""))
    return rows


def table(out: str) -> dict[str, tuple[int, Decimal]]:
    """category → (tokens, USD) from the printed table."""
    rows = {}
    for line in out.splitlines():
        match = re.match(r"^(.+?)\s{2,}([\d,]+)\s+(?:[\d.]+\s+)?([\d.]+)$", line)
        if match:
            rows[match.group(1).strip()] = (int(match.group(2).replace(",", "")), Decimal(match.group(3)))
    return rows


@pytest.fixture
def recorded(make_call):
    make_call(
        usage=DETAILED_USAGE,
        input_tokens=1000,
        output_tokens=500,
        duration_s=60,
        created=datetime(2026, 3, 2, tzinfo=UTC),
    )
    # Older rows may carry only totals: they are priced as uncached audio, the upper bound.
    make_call(
        usage={"input_tokens": 1000, "output_tokens": 1000},
        input_tokens=1000,
        output_tokens=1000,
        duration_s=120,
        created=datetime(2026, 3, 3, tzinfo=UTC),
    )
    make_call(usage=DETAILED_USAGE, duration_s=600, created=datetime(2026, 2, 1, tzinfo=UTC))  # outside --since


def test_recorded_usage_by_modality_and_cache(recorded, run):
    out, _ = run("estimate_cost", "--since", "2026-03-01")

    rows = table(out)
    assert rows["text input"] == (300, Decimal("0.0012"))
    assert rows["text input, cached"] == (100, Decimal("0.0000"))
    assert rows["audio input"] == (1400, Decimal("0.0448"))
    assert rows["audio input, cached"] == (200, Decimal("0.0001"))
    assert rows["text output"] == (100, Decimal("0.0024"))  # gpt-realtime-2.1: $24 per 1M text out
    assert rows["audio output"] == (1400, Decimal("0.0896"))
    assert rows["total"] == (3500, Decimal("0.1381"))
    assert "Recorded usage: 2 call(s), since 2026-03-01" in out
    assert "models: gpt-realtime-2.1 (2)" in out
    assert "1 call(s) without token details" in out
    assert "per call: $0.0691" in out
    assert "per minute: $0.0460 over 3.0 min" in out


def test_recorded_calls_price_each_model_at_its_own_prices(make_call, run, default_config):
    make_call(usage=DETAILED_USAGE, duration_s=60)
    mini = make_call(usage=DETAILED_USAGE, duration_s=60)
    mini.config_snapshot = {**mini.config_snapshot, "model": "gpt-realtime-2.1-mini"}
    mini.save()

    out, _ = run("estimate_cost")

    # Uncached audio input: 400 tokens at $32 + 400 at $10 per 1M; no single price column.
    assert "audio input                      800                 0.0168" in out
    assert table(out)["total"] == (3000, Decimal("0.0546"))  # 0.04212 + 0.012486


def test_recorded_calls_make_a_monthly_estimate(make_call, run):
    # Two 3-minute calls in a 2-day window: 30 calls a month; OpenAI at the recorded cost, scaled x15.
    for day in (2, 3):
        make_call(usage=DETAILED_USAGE, duration_s=180, created=datetime(2026, 3, day, 12, tzinfo=UTC))

    out, _ = run("estimate_cost", "--since", "2026-03-02", "--until", "2026-03-03", "--stage", "dev")

    assert "Scaled to a month: 2 call(s) in 2.0 day(s) → 30 call(s) of 3.00 min" in out
    # Each call: $0.04212 in tokens + 72 s of transcription ($0.0036) = $0.04572; x 2 x 15 = $1.3716.
    assert re.search(r"OpenAI +recorded usage \(realtime gpt-realtime-2.1\) +90\.00 minutes +\$1\.37", out)
    assert "AWS fixed" in out and "$168.38" in out


def test_price_flags_override_the_table(recorded, run):
    out, _ = run("estimate_cost", "--since", "2026-03-01", "--price-audio-output", "0", "--price-audio-input", "10")

    rows = table(out)
    assert rows["audio input"] == (1400, Decimal("0.0140"))
    assert rows["audio output"] == (1400, Decimal("0.0000"))


def test_until_bounds_the_window(recorded, run):
    out, _ = run("estimate_cost", "--until", "2026-03-02")
    assert "Recorded usage: 2 call(s)" in out
    out, _ = run("estimate_cost", "--until", "2026-03-01")
    assert "Recorded usage: 1 call(s)" in out


def test_no_calls_is_a_zero_table(run, db):
    out, _ = run("estimate_cost")
    assert table(out)["total"] == (0, Decimal("0.0000"))
    assert "none recorded" in out


def test_cached_tokens_without_a_split_are_shared_by_modality():
    tally = TokenTally()
    tally.add_usage(
        {
            "input_tokens": 1000,
            "input_token_details": {"text_tokens": 250, "audio_tokens": 750, "cached_tokens": 400},
        }
    )

    assert tally.tokens["text_cached"] == 100
    assert tally.tokens["audio_cached"] == 300
    assert tally.tokens["text_input"] == 150
    assert tally.tokens["audio_input"] == 450


def test_forecast_counts_caller_and_agent_audio_and_the_prompt(run, db):
    out, _ = run(
        "estimate_cost",
        "--calls",
        "10",
        "--minutes",
        "1",
        "--responses-per-minute",
        "1",
        "--caller-share",
        "0.5",
        "--agent-share",
        "0.5",
        "--prompt-tokens",
        "1000",
    )

    rows = month(out)
    assert rows["gpt-realtime-2.1 text input"] == (Decimal(10_000), Decimal("0.04"))
    assert rows["gpt-realtime-2.1 audio input"] == (Decimal(3_000), Decimal("0.10"))  # 600/min x ½ min x 10 calls
    assert rows["gpt-realtime-2.1 audio output"] == (Decimal(6_000), Decimal("0.38"))  # 1200/min x ½ min x 10
    assert rows["transcription gpt-4o-mini-transcribe"] == (Decimal(5), Decimal("0.02"))  # 5 caller minutes
    assert "Forecast: 10 call(s) a month of 1 min, realtime gpt-realtime-2.1" in out


def test_forecast_rereads_the_growing_conversation():
    def per_minute(minutes: float) -> float:
        tally = forecast_tokens(
            1,
            minutes,
            caller_share=0.4,
            agent_share=0.5,
            responses_per_minute=4,
            prompt_tokens=800,
            cache_hit=0.0,
        )
        return (tally.tokens["audio_input"] + tally.tokens["text_input"]) / minutes

    assert per_minute(10) > 3 * per_minute(1)

    two = forecast_tokens(
        1, 2, caller_share=0.5, agent_share=0.5, responses_per_minute=1, prompt_tokens=1000, cache_hit=0.0
    )
    # Response 1: the prompt and 300 caller tokens. Response 2: all of that again, the first agent turn
    # (600) and 300 new caller tokens.
    assert two.tokens["text_input"] == 2000
    assert two.tokens["audio_input"] == 300 + (300 + 600) + 300


def test_forecast_cache_hit_moves_rereads_to_the_cached_price():
    cached = forecast_tokens(
        1, 2, caller_share=0.5, agent_share=0.5, responses_per_minute=1, prompt_tokens=1000, cache_hit=1.0
    )
    assert cached.tokens["text_cached"] == 1000
    assert cached.tokens["audio_cached"] == 900
    assert cached.tokens["audio_input"] == 600


def test_forecast_defaults_to_the_default_configs_prompt(run, default_config):
    default_config.instructions = "x" * 8000
    default_config.save()

    out, _ = run("estimate_cost", "--calls", "1", "--minutes", "1")

    assert "prompt 2001 tokens" in out  # (8000 + len("Hello!")) // 4


def test_forecast_prints_the_whole_monthly_breakdown(run, default_config):
    out, _ = run("estimate_cost", "--calls", "3000", "--minutes", "3", "--stage", "dev", "--prompt-tokens", "500")

    totals = subtotals(out)
    # Hand-computed in tests/domain/test_pricing.py: the dev baseline, the audio on the wire, Twilio's
    # 9,000 minutes + Media Streams + a number, and 3,000 forecast calls at gpt-realtime-2.1 + transcription.
    assert totals == {
        "AWS fixed": Decimal("168.38"), "AWS variable": Decimal("1.51"), "Twilio": Decimal("113.65"),
        "OpenAI": Decimal("1828.08"), "monthly total": Decimal("2111.63"),
    }
    assert "per call-minute: $0.2346 (AWS $0.0189, Twilio $0.0126, OpenAI $0.2031) over 9,000 call-minutes" in out
    assert "interface endpoints off" in out


def test_forecast_for_live_and_endpoints(run, default_config):
    out, _ = run(
        "estimate_cost", "--calls", "3000", "--minutes", "3", "--engine", "live", "--stage", "dev", "--endpoints"
    )

    rows = month(out)
    assert rows["gpt-live-1.1 session"] == (Decimal(9000), Decimal("450.00"))
    assert rows["interface endpoints"] == (Decimal(8760), Decimal("87.60"))
    assert "Forecast: 3,000 call(s) a month of 3 min, live gpt-live-1.1" in out


def test_forecast_warns_when_the_bridge_cannot_scale_that_far(run, default_config):
    # 400,000 x 3 min over 220 busy hours = 90.9 concurrent calls; 24 a task at target -> 4 tasks, dev allows 3.
    out, _ = run("estimate_cost", "--calls", "400000", "--minutes", "3", "--stage", "dev", "--calls-per-task", "40")
    assert "WARNING: the busy hours need 4 bridge tasks, more than bridge_max_tasks (3)" in out


def test_sources_lists_every_price_with_its_provenance(run, db):
    out, _ = run("estimate_cost", "--sources")

    lines = out.splitlines()
    assert len(lines) >= 40 and all("https://" in line and re.search(r", \d{4}-\d{2}-\d{2}", line) for line in lines)
    assert (
        "aws.us-east-1.lambda_requests: usd 0.0000002 USD per request; https://aws.amazon.com/lambda/pricing/, "
        in out
    )
    assert "openai.live.gpt-live-1.1: usd 0.05 USD per session minute;" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--calls", "5"], "both --calls and --minutes"),
        (["--calls", "5", "--minutes", "90"], "at most 60 minutes"),
        (["--calls", "0", "--minutes", "3"], "at least 1"),
        (["--calls", "5", "--minutes", "3", "--since", "2026-01-01"], "a forecast takes none"),
        (["--price-audio-input", "cheap"], "price"),
        (["--price-audio-input", "-1"], "price"),
        (["--cache-hit", "1.5", "--calls", "1", "--minutes", "1"], "cache-hit"),
        (["--since", "last week"], "not a date"),
        (["--region", "eu-west-1"], "no AWS prices for region 'eu-west-1'"),
        (["--calls", "5", "--minutes", "3", "--model", "gpt-9-realtime"], "no price for Realtime model"),
        (["--stage", "staging"], "invalid choice"),
    ],
)
def test_bad_arguments(run, db, args, message):
    with pytest.raises(CommandError, match=message):
        run("estimate_cost", *args)
