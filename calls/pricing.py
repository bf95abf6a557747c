"""What voiceops costs: the one price table (calls/prices.toml) and the arithmetic on it.

Pure: no Django, no database; the only I/O is reading the table (once per region). Three uses:
- `call_cost`: one finished call's OpenAI cost from its recorded usage (stored on `Call.cost_usd`);
- `forecast_tokens` + `monthly_estimate`: a month of calls on the deployed AWS stack, line by line;
- `openai_per_minute`: the per-minute figure the agent config page shows.
Every price comes from the table; the constants here are traffic and deployment figures, never prices.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

PRICES_PATH = Path(__file__).with_name("prices.toml")
DEFAULT_REGION = "us-east-1"
DEFAULT_COUNTRY = "US"
ENGINES = ("realtime", "live")
DEFAULT_MODELS = {"realtime": "gpt-realtime-2.1", "live": "gpt-live-1.1"}
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
DEFAULT_BACKEND_MODEL = "gpt-5-mini"

TOKEN_CATEGORIES = ("text_input", "text_cached", "text_output", "audio_input", "audio_cached", "audio_output")
RESPONSES_CATEGORIES = ("input", "cached", "output")
MILLION = Decimal(1_000_000)
GB = Decimal(1_000_000_000)
HOURS_PER_MONTH = Decimal(730)  # AWS bills a month as 730 hours
DAYS_PER_MONTH = 30

# Audio token rates (PROTOCOLS.md / OpenAI's realtime cost guide): 1 token per 100 ms of caller audio,
# 1 per 50 ms of agent audio.
CALLER_AUDIO_TOKENS_PER_MIN = 600
AGENT_AUDIO_TOKENS_PER_MIN = 1200
# Share of a call the caller speaks: what input transcription is billed for when the usage does not say.
DEFAULT_CALLER_SHARE = Decimal("0.4")
DEFAULT_AGENT_SHARE = Decimal("0.5")

# Bytes on the wire per second of G.711 audio: 8,000 bytes of μ-law, base64 (4/3 the size) in a JSON envelope
# (≈ +20 %), 1.6 times in all. The caller's stream flows the whole call; the agent's only while it speaks.
WIRE_BYTES_PER_AUDIO_SECOND = Decimal(8000) * Decimal("1.6")

# GPT-Live backend (delegation) tokens per delegation: instructions, tools and context in; a short answer out.
BACKEND_INPUT_TOKENS = 3000
BACKEND_OUTPUT_TOKENS = 150
DEFAULT_DELEGATIONS_PER_MINUTE = Decimal("0.5")

# The webhook Lambda (deploy/cdk/voiceops_cdk/webhook.py): 512 MB, about 200 ms a request when warm.
WEBHOOK_GB = Decimal("0.5")
WEBHOOK_SECONDS = Decimal("0.2")
LOG_BYTES_PER_CALL = 10_000  # JSON lifecycle lines + EMF metric lines of one call, bridge and webhook
STATIC_REQUESTS_PER_PAGE = 10  # dashboard CSS/JS/icons from CloudFront per staff page view
STATIC_BYTES_PER_PAGE = 300_000


class PriceError(ValueError):
    """The price table is missing something a cost needs (a region, a model) or is malformed."""


@dataclass(frozen=True)
class Price:
    """One line of the table: its figures in USD per one `unit` (one `usd`, or one per token category)."""

    name: str
    values: Mapping[str, Decimal]
    unit: str
    source: str
    date: str
    note: str


@dataclass(frozen=True)
class PriceTable:
    region: str
    country: str
    realtime: Mapping[str, Mapping[str, Decimal]]  # model → token category → USD per 1M tokens
    live: Mapping[str, Decimal]  # model → USD per session minute
    transcription: Mapping[str, Decimal]  # model → USD per audio minute
    responses: Mapping[str, Mapping[str, Decimal]]  # backend model → input/cached/output → USD per 1M tokens
    aws: Mapping[str, Decimal]  # name → USD per unit
    rds_instance_hour: Mapping[str, Decimal]
    elasticache_node_hour: Mapping[str, Decimal]
    twilio: Mapping[str, Decimal]
    lines: tuple[Price, ...]

    @staticmethod
    def _get(prices: Mapping[str, Any], key: str, what: str) -> Any:
        try:
            return prices[key]
        except KeyError:
            known = ", ".join(sorted(prices)) or "none"
            raise PriceError(f"no price for {what} {key!r} in {PRICES_PATH.name} (known: {known})") from None

    def realtime_model(self, model: str) -> Mapping[str, Decimal]:
        return self._get(self.realtime, model, "Realtime model")

    def live_model(self, model: str) -> Decimal:
        return self._get(self.live, model, "GPT-Live model")

    def transcription_model(self, model: str) -> Decimal:
        return self._get(self.transcription, model, "transcription model")

    def backend_model(self, model: str) -> Mapping[str, Decimal]:
        return self._get(self.responses, model, "backend (Responses) model")

    def rds_instance(self, instance_class: str) -> Decimal:
        return self._get(self.rds_instance_hour, instance_class, f"RDS instance class in {self.region}")

    def cache_node(self, node_type: str) -> Decimal:
        return self._get(self.elasticache_node_hour, node_type, f"ElastiCache node type in {self.region}")


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _number(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise PriceError(f"{where}: {value!r} is not a number")
    number = Decimal(value)
    if not number.is_finite() or number < 0:
        raise PriceError(f"{where}: {value!r} must be a number ≥ 0")
    return number


def _line(name: str, entry: Any, fields: tuple[str, ...]) -> tuple[dict[str, Decimal], Price]:
    """Validate one table line: its numeric fields, `source` and `date` (a line without them is an error)."""
    if not isinstance(entry, dict):
        raise PriceError(f"{name}: expected an inline table, got {entry!r}")
    for meta in ("source", "date"):
        if not isinstance(entry.get(meta), str) or not entry[meta]:
            raise PriceError(f"{name}: every price needs a {meta}")
    if not _DATE.match(entry["date"]):
        raise PriceError(f"{name}: date {entry['date']!r} is not YYYY-MM-DD")
    per = _number(entry.get("per", 1), f"{name}.per")
    if per == 0:
        raise PriceError(f"{name}.per must not be 0")
    values = {}
    for key in fields:
        if key not in entry:
            raise PriceError(f"{name}: missing {key}")
        values[key] = _number(entry[key], f"{name}.{key}") / per
    unit = entry.get("unit", "1M tokens" if fields != ("usd",) else "")
    price = Price(name, values, unit, entry["source"], entry["date"], entry.get("note", ""))
    return values, price


def _section(data: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node


def parse_prices(text: str, region: str = DEFAULT_REGION, country: str = DEFAULT_COUNTRY) -> PriceTable:
    """The table for one AWS region and one Twilio country. A region or country missing from the table is an
    error naming the ones it has (an estimate on another region's prices would be silently wrong)."""
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise PriceError(f"{PRICES_PATH.name} is not valid TOML: {exc}") from None
    regions = sorted(_section(data, "aws"))
    if region not in regions:
        raise PriceError(f"no AWS prices for region {region!r} in {PRICES_PATH.name} (it has: {', '.join(regions)})")
    countries = sorted(_section(data, "twilio"))
    if country not in countries:
        raise PriceError(f"no Twilio prices for country {country!r} (it has: {', '.join(countries)})")
    lines: list[Price] = []

    def table(path: str, fields: tuple[str, ...], nested: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, entry in _section(data, path).items():
            if isinstance(entry, dict) and entry and all(isinstance(v, dict) for v in entry.values()):
                continue  # a sub-table (e.g. aws.<region>.rds_instance_hour), read on its own
            values, price = _line(f"{path}.{key}", entry, fields)
            lines.append(price)
            result[key] = values if nested else values[fields[0]]
        return result

    aws = f"aws.{region}"
    return PriceTable(
        region=region,
        country=country,
        realtime=table("openai.realtime", TOKEN_CATEGORIES, nested=True),
        live=table("openai.live", ("usd",)),
        transcription=table("openai.transcription", ("usd",)),
        responses=table("openai.responses", RESPONSES_CATEGORIES, nested=True),
        aws=table(aws, ("usd",)),
        rds_instance_hour=table(f"{aws}.rds_instance_hour", ("usd",)),
        elasticache_node_hour=table(f"{aws}.elasticache_node_hour", ("usd",)),
        twilio=table(f"twilio.{country}", ("usd",)),
        lines=tuple(lines),
    )


@lru_cache(maxsize=8)
def load_prices(region: str = DEFAULT_REGION, country: str = DEFAULT_COUNTRY) -> PriceTable:
    return parse_prices(PRICES_PATH.read_text(encoding="utf-8"), region, country)


# --- tokens ------------------------------------------------------------------------------------------------


@dataclass
class TokenTally:
    """Tokens by price category. Uncached and cached input are disjoint (cached is a subset of input
    in OpenAI's usage, so it is taken out of the uncached count)."""

    tokens: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    seconds: int = 0
    undetailed_calls: int = 0
    models: Counter[str] = field(default_factory=Counter)

    def add_usage(self, usage: Mapping[str, Any] | None, input_tokens: int = 0, output_tokens: int = 0) -> None:
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


def token_cost(tokens: Mapping[str, int], prices: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """USD per token category."""
    return {key: Decimal(tokens.get(key, 0)) * prices[key] / MILLION for key in TOKEN_CATEGORIES}


def forecast_tokens(
    calls: int,
    minutes: float,
    *,
    caller_share: float = float(DEFAULT_CALLER_SHARE),
    agent_share: float = float(DEFAULT_AGENT_SHARE),
    responses_per_minute: float = 4.0,
    prompt_tokens: int = 500,
    cache_hit: float = 0.0,
) -> TokenTally:
    """Realtime tokens for `calls` calls of `minutes` each.

    Each response re-reads the whole conversation so far (the prompt, every earlier caller and agent turn)
    plus the new caller turn, so input grows with the square of the call length. `cache_hit` is the share
    of that re-read billed at the cached price (0 = none: an upper bound).
    """
    responses = max(1, round(minutes * responses_per_minute))
    caller_turn = CALLER_AUDIO_TOKENS_PER_MIN * minutes * caller_share / responses
    agent_turn = AGENT_AUDIO_TOKENS_PER_MIN * minutes * agent_share / responses
    text_in = text_reread = audio_new = audio_reread = 0.0
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


def backend_cost(usage: Mapping[str, Any], prices: Mapping[str, Decimal]) -> Decimal:
    """Responses-API usage (summed over a call's delegations) at a backend model's prices."""
    total_in = int(usage.get("input_tokens") or 0)
    cached = min(total_in, int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0))
    total_out = int(usage.get("output_tokens") or 0)
    return (
        (total_in - cached) * prices["input"] + cached * prices["cached"] + total_out * prices["output"]
    ) / MILLION


# --- one call ----------------------------------------------------------------------------------------------


def call_cost(
    table: PriceTable,
    *,
    engine: str,
    model: str,
    usage: Mapping[str, Any] | None,
    duration_s: int | float | None,
    transcription_model: str | None = None,
    backend_model: str | None = None,
) -> Decimal:
    """A finished call's OpenAI cost in USD.

    Realtime: the summed `response.done` usage at the model's token prices, plus input transcription
    (billed per minute of caller audio: `usage["transcription"]["seconds"]` when the bridge reports it,
    else the caller's assumed share of the call; none when the session produced no usage at all).
    GPT-Live: billed seconds at $/min (`usage["seconds"]`, the session's final usage, when reported; else the
    call's duration), plus backend tokens (`usage["backend"]`, a summed Responses usage with an optional
    `model`) at the backend model's prices.
    Raises PriceError when a model is not in the table.
    """
    usage = usage or {}
    seconds = Decimal(str(duration_s or 0))
    if engine == "live":
        billed = usage.get("seconds")
        billed_seconds = Decimal(str(billed)) if isinstance(billed, int | float) else seconds
        cost = billed_seconds / 60 * table.live_model(model)
        backend = usage.get("backend")
        if isinstance(backend, Mapping) and (backend.get("input_tokens") or backend.get("output_tokens")):
            name = backend.get("model") or backend_model or DEFAULT_BACKEND_MODEL
            cost += backend_cost(backend, table.backend_model(name))
        return cost
    if engine != "realtime":
        raise PriceError(f"unknown engine {engine!r} (engines: {', '.join(ENGINES)})")
    tally = TokenTally()
    tally.add_usage(usage)
    cost = sum(token_cost(tally.tokens, table.realtime_model(model)).values(), Decimal(0))
    if transcription_model and (sum(tally.tokens.values()) or "transcription" in usage):
        reported = (usage.get("transcription") or {}).get("seconds")
        caller_seconds = Decimal(str(reported)) if reported is not None else seconds * DEFAULT_CALLER_SHARE
        cost += caller_seconds / 60 * table.transcription_model(transcription_model)
    return cost


# --- a month on the deployed stack ------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """What the CDK app (deploy/cdk/voiceops_cdk) runs for a stage, as far as it costs money.

    Sizes and counts mirror the CDK defaults; change them there and here together.
    """

    stage: str
    nat_gateways: int  # network.py: one in dev, one per AZ in prod
    availability_zones: int  # network.py: max_azs=2; the ALB holds one public IPv4 per AZ
    interface_endpoint_services: int  # network.py: ECR api+dkr, Secrets Manager, SSM, Logs, Monitoring (0 = off)
    bridge_vcpu: Decimal  # bridge.py: 1024 CPU units, 2048 MiB
    bridge_gb: Decimal
    bridge_min_tasks: int  # config.py bridge_min_tasks / bridge_max_tasks
    bridge_max_tasks: int
    web_vcpu: Decimal  # web.py (web_platform=fargate): 512 CPU units, 1024 MiB
    web_gb: Decimal
    web_min_tasks: int
    rds_instance: str  # data.py: t4g.micro dev, t4g.medium Multi-AZ prod, 20 GB
    rds_multi_az: bool
    rds_vcpus: int
    rds_storage_gb: int
    redis_node: str  # data.py: one cache.t4g.micro in dev; a primary and a replica of cache.t4g.small in prod
    redis_nodes: int
    alarms: int  # observability.py: ELB 5xx, 5xx + unhealthy per target group (2), bridge errors,
    # webhook errors + throttles, RDS CPU, active calls
    metrics: int  # custom/EMF metric series: ActiveCalls, BridgeErrors + ~10 EMF metrics (issue 9 §1)
    fixed_log_gb: Decimal  # logs with no calls: health checks, RDS + enhanced monitoring, flow logs
    calls_per_task: int  # config.py calls_per_task; scaling aims at 60 % of it (active_calls_target)
    scaling_target: Decimal = Decimal("0.6")

    @property
    def calls_per_task_at_target(self) -> Decimal:
        return max(Decimal(1), Decimal(self.calls_per_task) * self.scaling_target)


STAGES = ("dev", "prod")
INTERFACE_ENDPOINT_SERVICES = 6
DEFAULT_CALLS_PER_TASK = 79  # config.py calls_per_task: what one 1 vCPU / 2 GB bridge task holds (docs/perf.md)


def deployment(stage: str, *, endpoints: bool = False, calls_per_task: int = DEFAULT_CALLS_PER_TASK) -> Deployment:
    if stage not in STAGES:
        raise PriceError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    prod = stage == "prod"
    return Deployment(
        stage=stage,
        nat_gateways=2 if prod else 1,
        availability_zones=2,
        interface_endpoint_services=INTERFACE_ENDPOINT_SERVICES if endpoints else 0,
        bridge_vcpu=Decimal(1),
        bridge_gb=Decimal(2),
        bridge_min_tasks=2 if prod else 1,
        bridge_max_tasks=20 if prod else 3,
        web_vcpu=Decimal("0.5"),
        web_gb=Decimal(1),
        web_min_tasks=2 if prod else 1,
        rds_instance="db.t4g.medium" if prod else "db.t4g.micro",
        rds_multi_az=prod,
        rds_vcpus=2,
        rds_storage_gb=20,
        redis_node="cache.t4g.small" if prod else "cache.t4g.micro",
        redis_nodes=2 if prod else 1,
        alarms=10,
        metrics=12,
        fixed_log_gb=Decimal(2) if prod else Decimal(1),
        calls_per_task=calls_per_task,
    )


@dataclass(frozen=True)
class Workload:
    """A month of calls. `openai_usd`, when given (measured from recorded calls), replaces the forecast."""

    calls: int
    minutes: Decimal  # average call length
    engine: str = "realtime"
    model: str = DEFAULT_MODELS["realtime"]
    outbound_share: Decimal = Decimal(0)
    caller_share: Decimal = DEFAULT_CALLER_SHARE
    agent_share: Decimal = DEFAULT_AGENT_SHARE
    responses_per_minute: Decimal = Decimal(4)
    prompt_tokens: int = 500
    cache_hit: Decimal = Decimal(0)
    transcription_model: str | None = DEFAULT_TRANSCRIPTION_MODEL
    backend_model: str = DEFAULT_BACKEND_MODEL
    delegations_per_minute: Decimal = DEFAULT_DELEGATIONS_PER_MINUTE
    busy_hours: Decimal = Decimal(220)  # hours a month the calls fall in (10 h on 22 working days)
    webhook_requests_per_call: int = 2  # /twilio/voice (or /outbound) + the final status callback
    phone_numbers: int = 1
    staff_page_views: int = 1000
    realtime_prices: Mapping[str, Decimal] | None = None  # token price overrides (--price-* flags)
    openai_usd: Decimal | None = None

    @property
    def call_minutes(self) -> Decimal:
        return Decimal(self.calls) * self.minutes


@dataclass(frozen=True)
class Line:
    group: str
    item: str
    quantity: Decimal
    unit: str
    usd: Decimal


FIXED = "AWS fixed"
VARIABLE = "AWS variable"
TWILIO = "Twilio"
OPENAI = "OpenAI"
GROUPS = (FIXED, VARIABLE, TWILIO, OPENAI)


def bridge_tasks_needed(deploy: Deployment, work: Workload) -> int:
    """Bridge tasks the busy hours need: concurrent calls ÷ calls per task at the scaling target."""
    if work.busy_hours <= 0 or not work.calls:
        return deploy.bridge_min_tasks
    concurrent = work.call_minutes / 60 / work.busy_hours
    return max(deploy.bridge_min_tasks, math.ceil(concurrent / deploy.calls_per_task_at_target))


def monthly_estimate(table: PriceTable, deploy: Deployment, work: Workload) -> list[Line]:
    """A month's cost, line by line: the stack's fixed baseline, what the calls add, Twilio and OpenAI."""
    aws, h = table.aws, HOURS_PER_MONTH
    lines: list[Line] = []

    def add(group: str, item: str, quantity: Decimal | int, unit: str, usd: Decimal) -> None:
        lines.append(Line(group, item, Decimal(quantity), unit, usd))

    task_hour = {
        "bridge": deploy.bridge_vcpu * aws["fargate_vcpu_hour"] + deploy.bridge_gb * aws["fargate_gb_hour"],
        "web": deploy.web_vcpu * aws["fargate_vcpu_hour"] + deploy.web_gb * aws["fargate_gb_hour"],
    }
    # Fixed: what the stack costs with no calls at all.
    nat_hours = deploy.nat_gateways * h
    add(FIXED, "NAT gateways", nat_hours, "gateway-hours", nat_hours * aws["nat_gateway_hour"])
    ipv4 = deploy.nat_gateways + deploy.availability_zones
    add(FIXED, "public IPv4 (NAT + ALB)", ipv4 * h, "address-hours", ipv4 * h * aws["public_ipv4_hour"])
    if deploy.interface_endpoint_services:
        hours = deploy.interface_endpoint_services * deploy.availability_zones * h
        add(FIXED, "interface endpoints", hours, "endpoint-AZ-hours", hours * aws["interface_endpoint_hour"])
    add(FIXED, "ALB", h, "hours", h * aws["alb_hour"])
    add(FIXED, f"Fargate bridge ({deploy.bridge_vcpu:g} vCPU/{deploy.bridge_gb:g} GB)",
        deploy.bridge_min_tasks * h, "task-hours", deploy.bridge_min_tasks * h * task_hour["bridge"])
    add(FIXED, f"Fargate web ({deploy.web_vcpu:g} vCPU/{deploy.web_gb:g} GB)",
        deploy.web_min_tasks * h, "task-hours", deploy.web_min_tasks * h * task_hour["web"])
    rds_copies = 2 if deploy.rds_multi_az else 1  # Multi-AZ runs and stores a standby copy
    add(FIXED, f"RDS {deploy.rds_instance}{' Multi-AZ' if deploy.rds_multi_az else ''}", rds_copies * h,
        "instance-hours", rds_copies * h * table.rds_instance(deploy.rds_instance))
    storage = rds_copies * deploy.rds_storage_gb
    add(FIXED, "RDS storage (gp2)", storage, "GB-months", storage * aws["rds_gp2_gb_month"])
    proxy_vcpus = max(2, deploy.rds_vcpus)
    add(FIXED, "RDS Proxy", proxy_vcpus * h, "vCPU-hours", proxy_vcpus * h * aws["rds_proxy_vcpu_hour"])
    add(FIXED, f"ElastiCache {deploy.redis_node}", deploy.redis_nodes * h, "node-hours",
        deploy.redis_nodes * h * table.cache_node(deploy.redis_node))
    add(FIXED, "CloudWatch alarms", deploy.alarms, "alarms", deploy.alarms * aws["cloudwatch_alarm_month"])
    add(FIXED, "CloudWatch metrics", deploy.metrics, "metrics", deploy.metrics * aws["cloudwatch_metric_month"])
    add(FIXED, "CloudWatch logs (no calls)", deploy.fixed_log_gb, "GB",
        deploy.fixed_log_gb * aws["cloudwatch_logs_ingest_gb"])
    add(FIXED, "KMS key + DB secret", 2, "items", aws["kms_key_month"] + aws["secrets_manager_secret_month"])
    pages = Decimal(work.staff_page_views)
    static_gb = pages * STATIC_BYTES_PER_PAGE / GB
    add(FIXED, "CloudFront (dashboard static)", pages * STATIC_REQUESTS_PER_PAGE, "requests",
        pages * STATIC_REQUESTS_PER_PAGE * aws["cloudfront_https_requests"] + static_gb * aws["cloudfront_gb"])

    # Variable: what the calls add.
    call_minutes = work.call_minutes
    extra_tasks = bridge_tasks_needed(deploy, work) - deploy.bridge_min_tasks
    task_hours = extra_tasks * work.busy_hours
    add(VARIABLE, f"Fargate bridge above minimum ({deploy.calls_per_task} calls/task)", task_hours, "task-hours",
        task_hours * task_hour["bridge"])
    audio_seconds = call_minutes * 60
    # Caller audio to OpenAI + agent audio back, through the NAT (both directions billed); the same out to the
    # internet (caller audio to OpenAI, agent audio to Twilio; inbound is free); both Twilio directions via the ALB.
    wire_gb = audio_seconds * (1 + work.agent_share) * WIRE_BYTES_PER_AUDIO_SECOND / GB
    add(VARIABLE, "NAT data processed", wire_gb, "GB", wire_gb * aws["nat_gateway_gb"])
    add(VARIABLE, "data transfer out", wire_gb, "GB", wire_gb * aws["data_transfer_out_gb"])
    add(VARIABLE, "ALB LCUs (bytes processed)", wire_gb, "LCU-hours", wire_gb * aws["alb_lcu_hour"])
    requests = Decimal(work.calls * work.webhook_requests_per_call)
    gb_seconds = requests * WEBHOOK_GB * WEBHOOK_SECONDS
    add(VARIABLE, "Lambda webhook", requests, "requests",
        requests * aws["lambda_requests"] + gb_seconds * aws["lambda_gb_second"])
    add(VARIABLE, "API Gateway (HTTP API)", requests, "requests", requests * aws["api_gateway_http_requests"])
    log_gb = Decimal(work.calls * LOG_BYTES_PER_CALL) / GB
    add(VARIABLE, "CloudWatch logs (calls)", log_gb, "GB", log_gb * aws["cloudwatch_logs_ingest_gb"])

    # Twilio bills each call in whole minutes.
    billed = Decimal(work.calls * math.ceil(work.minutes))
    twilio = table.twilio
    inbound, outbound = billed * (1 - work.outbound_share), billed * work.outbound_share
    if inbound:
        add(TWILIO, "inbound minutes", inbound, "minutes", inbound * twilio["inbound_minute"])
    if outbound:
        add(TWILIO, "outbound minutes", outbound, "minutes", outbound * twilio["outbound_minute"])
    add(TWILIO, "Media Streams", billed, "minutes", billed * twilio["media_stream_minute"])
    add(TWILIO, "phone numbers", work.phone_numbers, "numbers", work.phone_numbers * twilio["local_number_month"])

    if work.openai_usd is not None:
        add(OPENAI, f"recorded usage ({work.engine} {work.model})", call_minutes, "minutes", work.openai_usd)
    elif work.engine == "live":
        add(OPENAI, f"{work.model} session", call_minutes, "minutes", call_minutes * table.live_model(work.model))
        delegations = call_minutes * work.delegations_per_minute
        backend = table.backend_model(work.backend_model)
        tokens_in, tokens_out = delegations * BACKEND_INPUT_TOKENS, delegations * BACKEND_OUTPUT_TOKENS
        add(OPENAI, f"backend {work.backend_model}", tokens_in + tokens_out, "tokens",
            (tokens_in * backend["input"] + tokens_out * backend["output"]) / MILLION)
    else:
        prices = work.realtime_prices or table.realtime_model(work.model)
        tally = forecast_tokens(
            work.calls, float(work.minutes), caller_share=float(work.caller_share),
            agent_share=float(work.agent_share), responses_per_minute=float(work.responses_per_minute),
            prompt_tokens=work.prompt_tokens, cache_hit=float(work.cache_hit),
        )
        costs = token_cost(tally.tokens, prices)
        for key in TOKEN_CATEGORIES:
            if tally.tokens[key]:
                add(OPENAI, f"{work.model} {key.replace('_', ' ')}", tally.tokens[key], "tokens", costs[key])
        if work.transcription_model:
            minutes = call_minutes * work.caller_share
            add(OPENAI, f"transcription {work.transcription_model}", minutes, "minutes",
                minutes * table.transcription_model(work.transcription_model))
    return lines


def group_totals(lines: list[Line]) -> dict[str, Decimal]:
    totals = dict.fromkeys(GROUPS, Decimal(0))
    for line in lines:
        totals[line.group] += line.usd
    return totals


def twilio_per_minute(table: PriceTable, *, outbound: bool = False) -> Decimal:
    """Twilio USD per call-minute: the voice minute plus the Media Stream (numbers and rounding aside)."""
    voice = table.twilio["outbound_minute" if outbound else "inbound_minute"]
    return voice + table.twilio["media_stream_minute"]


def openai_per_minute(
    table: PriceTable,
    engine: str,
    model: str,
    *,
    prompt_tokens: int = 500,
    transcription_model: str | None = DEFAULT_TRANSCRIPTION_MODEL,
    minutes: int = 3,
) -> Decimal:
    """OpenAI USD per minute of a typical `minutes`-minute call with the forecast's default conversation
    shape (the agent config page shows it). Raises PriceError for a model not in the table."""
    if engine == "live":
        per_minute = table.live_model(model)
        backend = table.backend_model(DEFAULT_BACKEND_MODEL)
        delegation = (BACKEND_INPUT_TOKENS * backend["input"] + BACKEND_OUTPUT_TOKENS * backend["output"]) / MILLION
        return per_minute + DEFAULT_DELEGATIONS_PER_MINUTE * delegation
    tally = forecast_tokens(1, minutes, prompt_tokens=prompt_tokens)
    total = sum(token_cost(tally.tokens, table.realtime_model(model)).values(), Decimal(0)) / minutes
    if transcription_model:
        total += DEFAULT_CALLER_SHARE * table.transcription_model(transcription_model)
    return total
