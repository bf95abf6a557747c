"""What voiceops costs a month: AWS (fixed baseline + what calls add), Twilio and OpenAI, from recorded calls or
as a forecast.

    manage.py estimate_cost --since 2026-11-01                     # what recorded calls cost, scaled to a month
    manage.py estimate_cost --calls 3000 --minutes 3               # forecast: 3,000 calls a month of 3 minutes
    manage.py estimate_cost --calls 3000 --minutes 3 --engine live --stage dev

Every price comes from calls/prices.toml (source and date per line; see docs/cost.md for the model). The AWS
side mirrors what the CDK app deploys for --stage (task sizes, minimum counts, NAT gateways, RDS, Redis);
interface endpoints count only with --endpoints (the CDK context choice, off by default).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from calls import pricing
from calls.management.commands._maintenance import parse_window
from calls.models import AgentConfig, Call
from calls.services import call_cost_usd, call_engine, prompt_tokens

LABELS = {
    "text_input": "text input",
    "text_cached": "text input, cached",
    "text_output": "text output",
    "audio_input": "audio input",
    "audio_cached": "audio input, cached",
    "audio_output": "audio output",
}
CENT = Decimal("0.0001")


def usd_per_million(value: str) -> Decimal:
    try:
        price = Decimal(value)
    except ArithmeticError:  # decimal's InvalidOperation is not a ValueError: argparse needs one
        raise ValueError(value) from None
    if not price.is_finite() or price < 0:
        raise ValueError(value)
    return price


def share(value: str) -> Decimal:
    number = Decimal(value)
    if not number.is_finite() or not 0 <= number <= 1:
        raise ValueError(value)
    return number


def positive(value: str) -> Decimal:
    number = Decimal(value)
    if not number.is_finite() or number <= 0:
        raise ValueError(value)
    return number


def money(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01'), ROUND_HALF_UP):,}"


class Recorded:
    """Recorded calls in a window: their tokens by category and model, and their OpenAI cost."""

    def __init__(self, since: datetime | None, until: datetime | None) -> None:
        self.by_model: dict[str, pricing.TokenTally] = {}
        self.tally = pricing.TokenTally()
        self.openai_usd = Decimal(0)
        self.unpriced: Counter[str] = Counter()
        self.engines: Counter[str] = Counter()
        self.first: datetime | None = None
        calls = Call.objects.all()
        if since:
            calls = calls.filter(created_at__gte=since)
        if until:
            calls = calls.filter(created_at__lt=until)
        for call in calls.order_by("created_at").iterator(chunk_size=1000):
            self.first = self.first or call.created_at
            engine = call_engine(call)
            model = (call.config_snapshot or {}).get("model") or pricing.DEFAULT_MODELS.get(engine, "")
            self.engines[f"{engine} {model}"] += 1
            self.tally.calls += 1
            self.tally.seconds += call.duration_s or 0
            self.tally.models[model] += 1
            cost = call_cost_usd(call)
            if cost is None:
                self.unpriced[model] += 1
            else:
                self.openai_usd += cost
            if engine == "realtime":
                self.tally.add_usage(call.usage, call.input_tokens, call.output_tokens)
                self.by_model.setdefault(model, pricing.TokenTally()).add_usage(
                    call.usage, call.input_tokens, call.output_tokens
                )


class Command(BaseCommand):
    help = (
        "Monthly cost of voiceops (AWS fixed + variable, Twilio, OpenAI) from recorded calls, or a forecast "
        "with --calls/--minutes. Prices: calls/prices.toml."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="Recorded calls created at or after this date (YYYY-MM-DD[THH:MM]).")
        parser.add_argument("--until", help="Recorded calls created before this date; a bare date includes it.")
        parser.add_argument("--calls", type=int, help="Forecast: calls a month.")
        parser.add_argument("--minutes", type=positive, help="Forecast: average call length in minutes.")
        parser.add_argument(
            "--engine", choices=pricing.ENGINES,
            help="Forecast: OpenAI engine (default: the default agent config's, else realtime).",
        )
        parser.add_argument(
            "--model", help="Forecast: model (default: the default config's for its engine, else gpt-realtime-2.1 "
            "for realtime and gpt-live-1.1 for live).",
        )
        parser.add_argument("--stage", choices=pricing.STAGES, default="prod",
                            help="Which CDK stage's AWS baseline to price (default prod).")
        parser.add_argument("--region", default=pricing.DEFAULT_REGION,
                            help=f"AWS region of the prices (default {pricing.DEFAULT_REGION}).")
        parser.add_argument("--sources", action="store_true",
                            help="List every price with its source and date (calls/prices.toml), then stop.")
        parser.add_argument("--endpoints", action="store_true",
                            help="Count the interface VPC endpoints (the CDK context choice; off by default).")
        parser.add_argument(
            "--calls-per-task", type=int, default=pricing.DEFAULT_CALLS_PER_TASK,
            help="Calls one bridge task carries (default %(default)s, the CDK's calls_per_task; use the measured "
            "figure from docs/perf.md when there is one). Scaling aims at 60%% of it.",
        )
        parser.add_argument(
            "--busy-hours", type=positive, default=pricing.Workload.busy_hours,
            help="Hours a month the calls fall in, for how many bridge tasks they need (default %(default)s: "
            "10 h on 22 working days).",
        )
        parser.add_argument("--outbound-share", type=share, default=Decimal(0),
                            help="Share of calls placed by voiceops (Twilio outbound rate; default 0).")
        parser.add_argument("--numbers", type=int, default=1, help="Twilio phone numbers rented (default 1).")
        parser.add_argument("--caller-share", type=share, default=pricing.DEFAULT_CALLER_SHARE,
                            help="Forecast: share of the call the caller speaks (default %(default)s).")
        parser.add_argument("--agent-share", type=share, default=pricing.DEFAULT_AGENT_SHARE,
                            help="Forecast: share of the call the agent speaks (default %(default)s).")
        parser.add_argument("--responses-per-minute", type=positive, default=Decimal(4),
                            help="Forecast, realtime: agent responses per minute (default 4, a turn every 15 s).")
        parser.add_argument(
            "--prompt-tokens", type=int, default=None,
            help="Forecast, realtime: instructions + tool definitions in tokens "
            "(default: the default config's, ≈ characters ÷ 4, at least 500).",
        )
        parser.add_argument(
            "--cache-hit", type=share, default=Decimal(0),
            help="Forecast, realtime: share of re-read input billed as cached (default 0: an upper bound).",
        )
        parser.add_argument(
            "--transcription-model",
            help="Forecast, realtime: input transcription model (default: the default config's, else "
            f"{pricing.DEFAULT_TRANSCRIPTION_MODEL}); 'none' for no transcription.",
        )
        parser.add_argument("--backend-model", default=pricing.DEFAULT_BACKEND_MODEL,
                            help="Forecast, live: the backend model delegations go to (default %(default)s).")
        parser.add_argument("--delegations-per-minute", type=share, default=pricing.DEFAULT_DELEGATIONS_PER_MINUTE,
                            help="Forecast, live: backend delegations per minute (default %(default)s).")
        for key, label in LABELS.items():
            parser.add_argument(
                f"--price-{key.replace('_', '-')}", dest=f"price_{key}", type=usd_per_million,
                help=f"Override: USD per 1M {label} tokens for every Realtime model (default: calls/prices.toml).",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            table = pricing.load_prices(options["region"])
            deploy = pricing.deployment(
                options["stage"], endpoints=options["endpoints"], calls_per_task=options["calls_per_task"]
            )
        except pricing.PriceError as exc:
            raise CommandError(str(exc)) from None
        if options["sources"]:
            for line in table.lines:
                figures = ", ".join(f"{key} {value.normalize():f}" for key, value in line.values.items())
                note = f" ({line.note})" if line.note else ""
                self.stdout.write(f"{line.name}: {figures} USD per {line.unit}; {line.source}, {line.date}{note}")
            return
        if options["calls_per_task"] < 1 or options["numbers"] < 0:
            raise CommandError("--calls-per-task must be at least 1 and --numbers at least 0")
        overrides = {k: options[f"price_{k}"] for k in LABELS if options[f"price_{k}"] is not None}
        calls, minutes = options["calls"], options["minutes"]
        if (calls is None) != (minutes is None):
            raise CommandError("a forecast needs both --calls and --minutes")
        try:
            if calls is not None:
                work = self._forecast(options, calls, minutes, table, overrides)
            else:
                work = self._recorded(options, table, overrides)
            if work is not None:
                self._print_month(table, deploy, work)
        except pricing.PriceError as exc:
            raise CommandError(str(exc)) from None

    # --- forecast -----------------------------------------------------------------------------------------

    def _forecast(
        self, options: dict[str, Any], calls: int, minutes: Decimal, table: pricing.PriceTable,
        overrides: dict[str, Decimal],
    ) -> pricing.Workload:
        if options["since"] or options["until"]:
            raise CommandError("--since/--until select recorded calls; a forecast takes none")
        if calls < 1:
            raise CommandError("--calls must be at least 1 and --minutes more than 0")
        config = AgentConfig.objects.filter(is_default=True).first()
        engine = options["engine"] or (config.engine if config else "realtime")
        if engine == "realtime" and minutes > 60:
            raise CommandError("a Realtime session lasts at most 60 minutes")
        model = options["model"] or (
            config.model if config and config.engine == engine else pricing.DEFAULT_MODELS[engine]
        )
        transcription = options["transcription_model"] or (
            (config.transcription_model if config.transcription_enabled else "none")
            if config else pricing.DEFAULT_TRANSCRIPTION_MODEL
        )
        prompt = options["prompt_tokens"]
        if prompt is None:
            prompt = prompt_tokens(config)
        prices = {**table.realtime_model(model), **overrides} if engine == "realtime" else None
        work = pricing.Workload(
            calls=calls, minutes=minutes, engine=engine, model=model,
            outbound_share=options["outbound_share"], caller_share=options["caller_share"],
            agent_share=options["agent_share"], responses_per_minute=options["responses_per_minute"],
            prompt_tokens=prompt, cache_hit=options["cache_hit"],
            transcription_model=None if transcription == "none" else transcription,
            backend_model=options["backend_model"], delegations_per_minute=options["delegations_per_minute"],
            busy_hours=options["busy_hours"], phone_numbers=options["numbers"], realtime_prices=prices,
        )
        shape = (
            f"prompt {prompt} tokens; {options['responses_per_minute']:g} responses/min; "
            f"cache hit {options['cache_hit']:.0%}"
            if engine == "realtime"
            else f"backend {work.backend_model}, {work.delegations_per_minute:g} delegations/min"
        )
        self.stdout.write(
            f"Forecast: {calls:,} call(s) a month of {minutes:g} min, {engine} {model}; caller speaks "
            f"{options['caller_share']:.0%}, agent {options['agent_share']:.0%}; {shape}"
        )
        return work

    # --- recorded calls ---------------------------------------------------------------------------------------

    def _recorded(
        self, options: dict[str, Any], table: pricing.PriceTable, overrides: dict[str, Decimal]
    ) -> pricing.Workload | None:
        since, until = parse_window(options["since"], options["until"])
        recorded = Recorded(since, until)
        tally = recorded.tally
        window = f"since {since:%Y-%m-%d %H:%M}" if since else "all time"
        if until:
            window += f", before {until:%Y-%m-%d %H:%M}"
        models = ", ".join(f"{m} ({n})" for m, n in tally.models.most_common()) or "none recorded"
        self.stdout.write(f"Recorded usage: {tally.calls} call(s), {window}; models: {models}")
        if tally.undetailed_calls:
            self.stdout.write(
                f"  {tally.undetailed_calls} call(s) without token details were priced as uncached audio "
                "(an upper bound)"
            )
        for model, count in recorded.unpriced.items():
            self.stdout.write(f"  {count} call(s) on {model!r} are left out of the USD figures: no price for it")
        self._print_tokens(recorded, table, overrides)
        if not tally.calls:
            return None
        # Scale the window to a month: a window given by --since/--until, else first recorded call → now.
        start = since or recorded.first
        end = min(until or timezone.now(), timezone.now())
        days = max(Decimal(1), Decimal((end - start).total_seconds()) / 86400) if start else Decimal(1)
        scale = pricing.DAYS_PER_MONTH / days
        engine_model, _ = recorded.engines.most_common(1)[0]
        engine, model = engine_model.split(" ", 1)
        minutes = Decimal(tally.seconds) / 60 / tally.calls if tally.seconds else Decimal(1)
        calls = max(1, round(tally.calls * scale))
        self.stdout.write(
            f"Scaled to a month: {tally.calls} call(s) in {days:.1f} day(s) → {calls:,} call(s) of "
            f"{minutes:.2f} min; OpenAI at the recorded cost"
        )
        return pricing.Workload(
            calls=calls, minutes=minutes, engine=engine, model=model, outbound_share=options["outbound_share"],
            agent_share=options["agent_share"], busy_hours=options["busy_hours"], phone_numbers=options["numbers"],
            openai_usd=recorded.openai_usd * scale,
        )

    def _print_tokens(self, recorded: Recorded, table: pricing.PriceTable, overrides: dict[str, Decimal]) -> None:
        """Realtime tokens by category, each model at its own prices (the price column only when one model)."""
        tally = recorded.tally
        costs = dict.fromkeys(pricing.TOKEN_CATEGORIES, Decimal(0))
        single: dict[str, Decimal] | None = None
        for model, model_tally in recorded.by_model.items():
            if model in recorded.unpriced:
                continue
            prices = {**table.realtime_model(model), **overrides}
            single = prices if len(recorded.by_model) == 1 else None
            for key, cost in pricing.token_cost(model_tally.tokens, prices).items():
                costs[key] += cost
        header = f"{'category':<22}{'tokens':>14}{'USD / 1M':>11}{'USD':>12}"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for key in pricing.TOKEN_CATEGORIES:
            price = f"{single[key]:>11.2f}" if single else " " * 11
            self.stdout.write(f"{LABELS[key]:<22}{tally.tokens[key]:>14,}{price}{costs[key]:>12.4f}")
        total = sum(costs.values(), Decimal(0))
        self.stdout.write("-" * len(header))
        self.stdout.write(f"{'total':<22}{sum(tally.tokens.values()):>14,}{'':>11}{total:>12.4f}")
        if tally.calls:
            self.stdout.write(f"per call: ${(total / tally.calls).quantize(CENT, ROUND_HALF_UP)}")
        if tally.seconds:
            per_minute = total / (Decimal(tally.seconds) / 60)
            self.stdout.write(
                f"per minute: ${per_minute.quantize(CENT, ROUND_HALF_UP)} over {tally.seconds / 60:,.1f} min"
            )
        self.stdout.write(
            f"OpenAI, all engines, with input transcription: ${recorded.openai_usd.quantize(CENT, ROUND_HALF_UP)}"
        )

    # --- the month ----------------------------------------------------------------------------------------

    def _print_month(self, table: pricing.PriceTable, deploy: pricing.Deployment, work: pricing.Workload) -> None:
        lines = pricing.monthly_estimate(table, deploy, work)
        endpoints = "on" if deploy.interface_endpoint_services else "off"
        self.stdout.write("")
        self.stdout.write(
            f"Monthly estimate, stage {deploy.stage}, {table.region}, interface endpoints {endpoints}; "
            f"prices: calls/prices.toml"
        )
        header = f"{'':<13}{'item':<48}{'quantity':>16} {'unit':<18}{'USD/month':>12}"
        self.stdout.write(header)
        for line in lines:
            self.stdout.write(
                f"{line.group:<13}{line.item:<48}{line.quantity:>16,.2f} {line.unit:<18}{money(line.usd):>12}"
            )
        totals = pricing.group_totals(lines)
        grand = sum(totals.values(), Decimal(0))
        self.stdout.write("-" * len(header))
        for group, usd in totals.items():
            self.stdout.write(f"{group:<13}{'':<48}{'':>16} {'':<18}{money(usd):>12}")
        self.stdout.write(f"{'monthly total':<13}{'':<48}{'':>16} {'':<18}{money(grand):>12}")
        tasks = pricing.bridge_tasks_needed(deploy, work)
        if tasks > deploy.bridge_max_tasks:
            self.stdout.write(
                f"WARNING: the busy hours need {tasks} bridge tasks, more than bridge_max_tasks "
                f"({deploy.bridge_max_tasks}): raise it in the CDK context or calls will be refused."
            )
        if work.call_minutes:
            aws = totals[pricing.FIXED] + totals[pricing.VARIABLE]
            per = {name: usd / work.call_minutes for name, usd in (
                ("total", grand), ("AWS", aws), ("Twilio", totals[pricing.TWILIO]), ("OpenAI", totals[pricing.OPENAI])
            )}
            self.stdout.write(
                f"per call-minute: ${per['total'].quantize(CENT, ROUND_HALF_UP)} (AWS "
                f"${per['AWS'].quantize(CENT, ROUND_HALF_UP)}, Twilio ${per['Twilio'].quantize(CENT, ROUND_HALF_UP)}, "
                f"OpenAI ${per['OpenAI'].quantize(CENT, ROUND_HALF_UP)}) over {work.call_minutes:,.0f} call-minutes"
            )
            self.stdout.write(f"per call: ${(grand / work.calls).quantize(CENT, ROUND_HALF_UP)}")

