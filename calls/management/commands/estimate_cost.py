"""Estimate OpenAI Realtime cost: from the usage recorded on calls, or as a forecast.

    manage.py estimate_cost --since 2026-01-01              # what recorded calls cost
    manage.py estimate_cost --calls 1000 --minutes 3        # forecast: 1000 calls of 3 minutes

Prices are USD per 1M tokens, from settings (OPENAI_PRICE_*), overridable with --price-* flags. Defaults are
gpt-realtime's published prices: text $4 in / $0.40 cached / $16 out, audio $32 in / $0.40 cached / $64 out.
Input transcription (billed separately by its own model) and Twilio minutes are not included.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from calls.management.commands._maintenance import parse_window
from calls.models import Call

# Setting name → default price in USD per 1M tokens (gpt-realtime, GA).
PRICE_SETTINGS: dict[str, tuple[str, Decimal]] = {
    "text_input": ("OPENAI_PRICE_TEXT_INPUT_PER_1M", Decimal("4.00")),
    "text_cached": ("OPENAI_PRICE_TEXT_CACHED_INPUT_PER_1M", Decimal("0.40")),
    "text_output": ("OPENAI_PRICE_TEXT_OUTPUT_PER_1M", Decimal("16.00")),
    "audio_input": ("OPENAI_PRICE_AUDIO_INPUT_PER_1M", Decimal("32.00")),
    "audio_cached": ("OPENAI_PRICE_AUDIO_CACHED_INPUT_PER_1M", Decimal("0.40")),
    "audio_output": ("OPENAI_PRICE_AUDIO_OUTPUT_PER_1M", Decimal("64.00")),
}
LABELS = {
    "text_input": "text input",
    "text_cached": "text input, cached",
    "text_output": "text output",
    "audio_input": "audio input",
    "audio_cached": "audio input, cached",
    "audio_output": "audio output",
}
# Audio token rates (PROTOCOLS.md / OpenAI's realtime cost guide): 1 token per 100 ms of caller audio,
# 1 per 50 ms of agent audio.
CALLER_AUDIO_TOKENS_PER_MIN = 600
AGENT_AUDIO_TOKENS_PER_MIN = 1200
MILLION = Decimal(1_000_000)
CENT = Decimal("0.0001")


@dataclass
class TokenTally:
    """Tokens by price category. Uncached and cached input are disjoint (cached is a subset of input
    in OpenAI's usage, so it is taken out of the uncached count)."""

    tokens: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    seconds: int = 0
    undetailed_calls: int = 0
    models: Counter[str] = field(default_factory=Counter)

    def add_usage(self, usage: dict[str, Any], input_tokens: int = 0, output_tokens: int = 0) -> None:
        """Add one call's summed `response.done` usage. Without the per-modality details, everything
        is counted as uncached audio: the most expensive reading, so the estimate stays an upper bound."""
        usage = usage or {}
        inp = usage.get("input_token_details") or {}
        out = usage.get("output_token_details") or {}
        total_in = int(usage.get("input_tokens", input_tokens) or 0)
        total_out = int(usage.get("output_tokens", output_tokens) or 0)
        if not inp and not out and (total_in or total_out):
            self.undetailed_calls += 1
        if inp:
            text_in, audio_in = int(inp.get("text_tokens") or 0), int(inp.get("audio_tokens") or 0)
            cached = int(inp.get("cached_tokens") or 0)
            cached_details = inp.get("cached_tokens_details") or {}
            if cached_details:
                cached_text = int(cached_details.get("text_tokens") or 0)
                cached_audio = int(cached_details.get("audio_tokens") or 0)
            else:
                # No split given: share the cached tokens out in proportion to each modality's input.
                cached_text = round(cached * text_in / (text_in + audio_in)) if text_in + audio_in else 0
                cached_audio = cached - cached_text
            self.tokens["text_input"] += max(0, text_in - cached_text)
            self.tokens["text_cached"] += min(cached_text, text_in)
            self.tokens["audio_input"] += max(0, audio_in - cached_audio)
            self.tokens["audio_cached"] += min(cached_audio, audio_in)
        else:
            self.tokens["audio_input"] += total_in
        if out:
            self.tokens["text_output"] += int(out.get("text_tokens") or 0)
            self.tokens["audio_output"] += int(out.get("audio_tokens") or 0)
        else:
            self.tokens["audio_output"] += total_out


def prices_from(options: dict[str, Any]) -> dict[str, Decimal]:
    prices = {}
    for key, (setting, default) in PRICE_SETTINGS.items():
        flag = options.get(f"price_{key}")
        value = flag if flag is not None else getattr(settings, setting, default)
        try:
            price = Decimal(str(value))
        except ArithmeticError:
            raise CommandError(f"price {key} {value!r} is not a number") from None
        if price < 0:
            raise CommandError(f"price {key} must not be negative")
        prices[key] = price
    return prices


def cost_of(tokens: int, price_per_million: Decimal) -> Decimal:
    return Decimal(tokens) * price_per_million / MILLION


def tally_recorded(since: Any, until: Any) -> TokenTally:
    tally = TokenTally()
    calls = Call.objects.all()
    if since:
        calls = calls.filter(created_at__gte=since)
    if until:
        calls = calls.filter(created_at__lt=until)
    rows = calls.values_list("usage", "input_tokens", "output_tokens", "duration_s", "config_snapshot__model")
    for usage, input_tokens, output_tokens, duration, model in rows.iterator(chunk_size=1000):
        tally.calls += 1
        tally.seconds += duration or 0
        tally.add_usage(usage, input_tokens, output_tokens)
        if model:
            tally.models[model] += 1
    return tally


def forecast(
    calls: int,
    minutes: float,
    *,
    caller_share: float,
    agent_share: float,
    responses_per_minute: float,
    prompt_tokens: int,
    cache_hit: float,
) -> TokenTally:
    """Tokens for `calls` calls of `minutes` each.

    Each response re-reads the whole conversation so far (the prompt, every earlier caller and agent turn)
    plus the new caller turn, so input grows with the square of the call length. `cache_hit` is the share
    of that re-read billed at the cached price (0 = none: an upper bound).
    """
    responses = max(1, round(minutes * responses_per_minute))
    caller_turn = CALLER_AUDIO_TOKENS_PER_MIN * minutes * caller_share / responses
    agent_turn = AGENT_AUDIO_TOKENS_PER_MIN * minutes * agent_share / responses
    text_in = audio_new = audio_reread = 0.0
    text_reread = 0.0
    for k in range(responses):
        # The prompt is new on the first response, a re-read afterwards.
        if k == 0:
            text_in += prompt_tokens
        else:
            text_reread += prompt_tokens
        audio_reread += k * (caller_turn + agent_turn)
        audio_new += caller_turn
    tally = TokenTally(calls=calls, seconds=round(calls * minutes * 60))
    per_call = {
        "text_input": text_in + text_reread * (1 - cache_hit),
        "text_cached": text_reread * cache_hit,
        "audio_input": audio_new + audio_reread * (1 - cache_hit),
        "audio_cached": audio_reread * cache_hit,
        "audio_output": agent_turn * responses,
        "text_output": 0.0,
    }
    for key, value in per_call.items():
        tally.tokens[key] = round(value * calls)
    return tally


def usd_per_million(value: str) -> Decimal:
    try:
        price = Decimal(value)
    except ArithmeticError:  # decimal's InvalidOperation is not a ValueError: argparse needs one
        raise ValueError(value) from None
    if not price.is_finite() or price < 0:
        raise ValueError(value)
    return price


def share(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Estimate OpenAI Realtime cost from recorded call usage, or forecast it with --calls/--minutes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since", help="Recorded calls created at or after this date (YYYY-MM-DD[THH:MM])."
        )
        parser.add_argument(
            "--until", help="Recorded calls created before this date; a bare date includes it."
        )
        parser.add_argument("--calls", type=int, help="Forecast: number of calls.")
        parser.add_argument("--minutes", type=float, help="Forecast: average call length in minutes.")
        parser.add_argument(
            "--caller-share",
            type=share,
            default=0.4,
            help="Forecast: share of the call the caller speaks (default 0.4).",
        )
        parser.add_argument(
            "--agent-share",
            type=share,
            default=0.5,
            help="Forecast: share of the call the agent speaks (default 0.5).",
        )
        parser.add_argument(
            "--responses-per-minute",
            type=float,
            default=4.0,
            help="Forecast: agent responses per minute (default 4, a turn every 15 s).",
        )
        parser.add_argument(
            "--prompt-tokens",
            type=int,
            default=None,
            help="Forecast: instructions + tool definitions in tokens "
            "(default: the default config's, ≈ characters ÷ 4, at least 500).",
        )
        parser.add_argument(
            "--cache-hit",
            type=share,
            default=0.0,
            help="Forecast: share of re-read input billed as cached (default 0: upper bound).",
        )
        for key, (setting, default) in PRICE_SETTINGS.items():
            parser.add_argument(
                f"--price-{key.replace('_', '-')}",
                dest=f"price_{key}",
                type=usd_per_million,
                help=f"USD per 1M {LABELS[key]} tokens (setting {setting}, default {default}).",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        prices = prices_from(options)
        calls, minutes = options["calls"], options["minutes"]
        if (calls is None) != (minutes is None):
            raise CommandError("a forecast needs both --calls and --minutes")
        if calls is not None:
            if options["since"] or options["until"]:
                raise CommandError("--since/--until select recorded calls; a forecast takes none")
            if calls < 1 or minutes <= 0:
                raise CommandError("--calls must be at least 1 and --minutes more than 0")
            if minutes > 60:
                raise CommandError("a Realtime session lasts at most 60 minutes")
            prompt = options["prompt_tokens"]
            if prompt is None:
                prompt = self._default_prompt_tokens()
            tally = forecast(
                calls,
                minutes,
                caller_share=options["caller_share"],
                agent_share=options["agent_share"],
                responses_per_minute=options["responses_per_minute"],
                prompt_tokens=prompt,
                cache_hit=options["cache_hit"],
            )
            self.stdout.write(
                f"Forecast: {calls} call(s) of {minutes:g} min; caller speaks {options['caller_share']:.0%}, "
                f"agent {options['agent_share']:.0%}; {options['responses_per_minute']:g} responses/min; "
                f"prompt {prompt} tokens; cache hit {options['cache_hit']:.0%}"
            )
        else:
            since, until = parse_window(options["since"], options["until"])
            tally = tally_recorded(since, until)
            window = f"since {since:%Y-%m-%d %H:%M}" if since else "all time"
            if until:
                window += f", before {until:%Y-%m-%d %H:%M}"
            models = ", ".join(f"{m} ({n})" for m, n in tally.models.most_common()) or "none recorded"
            self.stdout.write(f"Recorded usage: {tally.calls} call(s), {window}; models: {models}")
            if tally.undetailed_calls:
                self.stdout.write(
                    f"  {tally.undetailed_calls} call(s) without token details were priced "
                    "as uncached audio (an upper bound)"
                )
        self._print_table(tally, prices)

    def _default_prompt_tokens(self) -> int:
        from calls.models import AgentConfig

        config = AgentConfig.objects.filter(is_default=True).first()
        if config is None:
            return 500
        text = config.instructions + config.greeting + "".join(t.description for t in config.tools.all())
        return max(500, len(text) // 4)

    def _print_table(self, tally: TokenTally, prices: dict[str, Decimal]) -> None:
        header = f"{'category':<22}{'tokens':>14}{'USD / 1M':>11}{'USD':>12}"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        total = Decimal(0)
        for key in PRICE_SETTINGS:
            tokens = tally.tokens[key]
            cost = cost_of(tokens, prices[key])
            total += cost
            self.stdout.write(f"{LABELS[key]:<22}{tokens:>14,}{prices[key]:>11.2f}{cost:>12.4f}")
        self.stdout.write("-" * len(header))
        self.stdout.write(f"{'total':<22}{sum(tally.tokens.values()):>14,}{'':>11}{total:>12.4f}")
        if tally.calls:
            self.stdout.write(f"per call: ${(total / tally.calls).quantize(CENT, ROUND_HALF_UP)}")
        if tally.seconds:
            per_minute = total / (Decimal(tally.seconds) / 60)
            self.stdout.write(
                f"per minute: ${per_minute.quantize(CENT, ROUND_HALF_UP)} over {tally.seconds / 60:,.1f} min"
            )
        self.stdout.write("Excludes input transcription and Twilio charges.")
