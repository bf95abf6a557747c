from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management.base import CommandError

from calls.management.commands.estimate_cost import TokenTally, forecast

pytestmark = pytest.mark.django_db

DETAILED = {
    "input_tokens": 1000,
    "output_tokens": 500,
    "total_tokens": 1500,
    "input_token_details": {
        "text_tokens": 400,
        "audio_tokens": 600,
        "cached_tokens": 300,
        "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 200},
    },
    "output_token_details": {"text_tokens": 100, "audio_tokens": 400},
}


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
        usage=DETAILED,
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
    make_call(usage=DETAILED, duration_s=600, created=datetime(2026, 2, 1, tzinfo=UTC))  # outside --since


def test_recorded_usage_by_modality_and_cache(recorded, run):
    out, _ = run("estimate_cost", "--since", "2026-03-01")

    rows = table(out)
    assert rows["text input"] == (300, Decimal("0.0012"))
    assert rows["text input, cached"] == (100, Decimal("0.0000"))
    assert rows["audio input"] == (1400, Decimal("0.0448"))
    assert rows["audio input, cached"] == (200, Decimal("0.0001"))
    assert rows["text output"] == (100, Decimal("0.0016"))
    assert rows["audio output"] == (1400, Decimal("0.0896"))
    assert rows["total"] == (3500, Decimal("0.1373"))
    assert "Recorded usage: 2 call(s), since 2026-03-01" in out
    assert "models: gpt-realtime-2.1 (2)" in out
    assert "1 call(s) without token details" in out
    assert "per call: $0.0687" in out
    assert "per minute: $0.0458 over 3.0 min" in out


def test_price_flags_and_settings_override_the_defaults(recorded, run, settings):
    settings.OPENAI_PRICE_AUDIO_INPUT_PER_1M = "10"

    out, _ = run("estimate_cost", "--since", "2026-03-01", "--price-audio-output", "0")

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

    rows = table(out)
    assert rows["text input"] == (10_000, Decimal("0.0400"))
    assert rows["audio input"] == (3_000, Decimal("0.0960"))  # 600 tokens/min x ½ min x 10 calls
    assert rows["audio output"] == (6_000, Decimal("0.3840"))  # 1200 tokens/min x ½ min x 10 calls
    assert rows["total"][1] == Decimal("0.5200")
    assert "Forecast: 10 call(s) of 1 min" in out


def test_forecast_rereads_the_growing_conversation():
    def per_minute(minutes: float) -> float:
        tally = forecast(
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

    two = forecast(
        1, 2, caller_share=0.5, agent_share=0.5, responses_per_minute=1, prompt_tokens=1000, cache_hit=0.0
    )
    # Response 1: the prompt and 300 caller tokens. Response 2: all of that again, the first agent turn
    # (600) and 300 new caller tokens.
    assert two.tokens["text_input"] == 2000
    assert two.tokens["audio_input"] == 300 + (300 + 600) + 300


def test_forecast_cache_hit_moves_rereads_to_the_cached_price():
    cached = forecast(
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
    ],
)
def test_bad_arguments(run, db, args, message):
    with pytest.raises(CommandError, match=message):
        run("estimate_cost", *args)
