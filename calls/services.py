"""Domain operations on configs and calls. Views, admin, the webhook and the bridge call these."""

from __future__ import annotations

import io
import logging
import statistics
import tempfile
import uuid
import wave
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Prefetch, QuerySet
from django.utils import timezone

from calls import pricing
from calls.models import (
    BUILTIN_TOOLS,
    AgentConfig,
    AgentConfigRevision,
    Call,
    CallEvent,
    PhoneNumber,
    Tool,
    default_model,
)
from voiceops import logs
from voiceops.redact import mask_phone  # noqa: F401 -- the one mask, named here by the contract

log = logging.getLogger(__name__)

BUILTIN_TOOL_SPECS: dict[str, dict[str, Any]] = {
    "end_call": {
        "description": "End the phone call. Use it after saying goodbye, when the caller is done.",
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why the call is ending."}},
            "required": [],
        },
    },
    "transfer_call": {
        "description": "Transfer the caller to a human colleague. Tell the caller first that you are transferring.",
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "What the caller needs help with."}},
            "required": [],
        },
    },
}

# The fields a revision keeps and a restore writes back (everything staff edit).
REVISION_FIELDS = [
    "name", "instructions", "greeting", "engine", "voice", "model", "backend_model", "backend_instructions",
    "speed", "turn_detection", "vad_threshold", "vad_prefix_padding_ms", "vad_silence_duration_ms",
    "idle_timeout_ms", "eagerness", "interrupt_response", "noise_reduction", "transcription_enabled",
    "transcription_model", "max_output_tokens", "max_call_minutes", "transfer_number", "transfer_mode",
    "on_failed_transfer",
    "is_active", "is_default",
    "machine_detection", "voicemail_message", "calling_hours_start", "calling_hours_end", "calling_time_zone",
    "max_concurrent_outbound", "record_calls", "consent_message", "dtmf_actions",
]


# --- tools and configs ---------------------------------------------------------------------------------

def ensure_builtin_tools() -> list[Tool]:
    tools = []
    for name in BUILTIN_TOOLS:
        spec = BUILTIN_TOOL_SPECS[name]
        tool, _ = Tool.objects.get_or_create(
            name=name, defaults={"kind": Tool.Kind.BUILTIN, **spec}
        )
        tools.append(tool)
    return tools


def config_fields(config: AgentConfig) -> dict[str, Any]:
    data = {f: getattr(config, f) for f in REVISION_FIELDS}
    data["tools"] = sorted(config.tools.values_list("name", flat=True)) if config.pk else []
    return data


def record_revision(config: AgentConfig, author: Any = None, comment: str = "") -> AgentConfigRevision | None:
    """Keep a revision after a save; nothing when nothing changed since the last one."""
    data = config_fields(config)
    last = config.revisions.order_by("-number").first()
    if last is not None and last.data == data:
        return None
    changed = sorted(k for k in data if last is None or last.data.get(k) != data[k])
    if author is not None and not getattr(author, "is_authenticated", False):
        author = None
    return AgentConfigRevision.objects.create(
        config=config, number=(last.number + 1) if last else 1, author=author, data=data,
        changed_fields=changed, comment=comment[:200],
    )


def revision_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    old = old or {}
    keys = [*REVISION_FIELDS, "tools"]  # a stable order: PostgreSQL's jsonb reorders keys
    return [(k, old.get(k), new.get(k)) for k in keys if k in new and old.get(k) != new.get(k)]


@transaction.atomic
def restore_revision(revision: AgentConfigRevision, author: Any = None) -> AgentConfig:
    config = AgentConfig.objects.select_for_update().get(pk=revision.config_id)
    data = dict(revision.data)
    tool_names = data.pop("tools", [])
    for field in REVISION_FIELDS:
        if field in data:
            setattr(config, field, data[field])
    if config.is_default:
        AgentConfig.objects.filter(is_default=True).exclude(pk=config.pk).update(is_default=False)
    config.full_clean()
    config.save()
    config.tools.set(Tool.objects.filter(name__in=tool_names))
    record_revision(config, author, comment=f"Restored revision {revision.number}")
    return config


def resolve_config(to_number: str) -> AgentConfig | None:
    """The config for the dialled number, else the default config; None when neither is usable."""
    route = (
        PhoneNumber.objects.select_related("agent_config")
        .filter(number=to_number, is_active=True, agent_config__is_active=True)
        .first()
    )
    if route:
        return route.agent_config
    return AgentConfig.objects.filter(is_default=True, is_active=True).first()


def config_snapshot(config: AgentConfig) -> dict[str, Any]:
    """Everything the bridge needs for a call, frozen at the moment the call came in."""
    turn: dict[str, Any]
    if config.turn_detection == AgentConfig.TurnDetection.SEMANTIC_VAD:
        turn = {"type": "semantic_vad", "eagerness": config.eagerness}
    else:
        turn = {
            "type": "server_vad", "threshold": config.vad_threshold,
            "prefix_padding_ms": config.vad_prefix_padding_ms,
            "silence_duration_ms": config.vad_silence_duration_ms,
        }
        if config.idle_timeout_ms:
            turn["idle_timeout_ms"] = config.idle_timeout_ms
    turn.update(interrupt_response=config.interrupt_response, create_response=True)
    tools = []
    for tool in config.tools.filter(is_active=True).order_by("name"):
        if tool.kind == Tool.Kind.BUILTIN and tool.name == "transfer_call" and not config.transfer_number:
            continue  # nowhere to transfer to: do not offer it to the model
        spec: dict[str, Any] = {
            "kind": tool.kind, "name": tool.name, "description": tool.description, "parameters": tool.parameters,
        }
        if tool.kind == Tool.Kind.HTTP:
            spec.update(url=tool.url, timeout_s=tool.timeout_s, secret_header_name=tool.secret_header_name,
                        tool_id=tool.pk)
        tools.append(spec)
    last = config.revisions.order_by("-number").values_list("number", flat=True).first() if config.pk else None
    return {
        "config_id": config.pk, "name": config.name, "revision": last or 0, "engine": config.engine,
        "model": config.model or (settings.OPENAI_REALTIME_MODEL if config.engine == AgentConfig.Engine.REALTIME
                                  else default_model(config.engine)),
        "instructions": config.instructions, "voice": config.voice, "speed": config.speed,
        "greeting": config.greeting, "turn_detection": turn,
        "backend_model": config.backend_model or None, "backend_instructions": config.backend_instructions or None,
        "noise_reduction": config.noise_reduction or None,
        "transcription_model": config.transcription_model if config.transcription_enabled else None,
        "max_output_tokens": config.max_output_tokens or "inf",
        "max_call_seconds": config.max_call_minutes * 60,
        "transfer_number": config.transfer_number or None,
        "transfer_mode": config.transfer_mode,
        "on_failed_transfer": config.on_failed_transfer,
        "tools": tools,
        "record_calls": config.record_calls,
        "consent_message": config.consent_message,
        # Keys without an action tell the model; a transfer key does nothing useful without a number.
        "dtmf_actions": {k: a for k, a in config.dtmf_actions.items()
                         if a != "model" and (a != "transfer" or config.transfer_number)},
    }


def prompt_tokens(config: AgentConfig | None) -> int:
    """A config's instructions, greeting and tool descriptions in tokens (≈ characters ÷ 4, at least 500)."""
    if config is None or config.pk is None:
        return 500
    text = config.instructions + config.greeting + "".join(t.description for t in config.tools.all())
    return max(500, len(text) // 4)


def config_minute_cost(config: AgentConfig) -> tuple[Decimal, Decimal]:
    """(OpenAI, Twilio inbound) USD per minute of a typical call on this config's engine and model.
    Raises pricing.PriceError when the price table does not know the model."""
    table = pricing.load_prices()
    openai = pricing.openai_per_minute(
        table, config.engine, config.model, prompt_tokens=prompt_tokens(config),
        transcription_model=config.transcription_model if config.transcription_enabled else None,
    )
    return openai, pricing.twilio_per_minute(table)


# --- calls ---------------------------------------------------------------------------------------------

# A form field only voiceops' own callers (simulate_call, loadtest) add to the signed webhook request: the
# call is a test, kept out of the headline figures. Twilio never sends it; the signature covers it.
TEST_CALL_PARAM = "VoiceopsTest"


def start_call(call_sid: str, account_sid: str, from_number: str, to_number: str,
               config: AgentConfig | None, *, is_test: bool = False) -> Call:
    """The webhook's record of an incoming call. A retried webhook (same SID) gets the same row."""
    call, created = Call.objects.get_or_create(
        twilio_call_sid=call_sid,
        defaults={
            "account_sid": account_sid, "from_number": from_number, "to_number": to_number,
            "agent_config": config, "config_snapshot": config_snapshot(config) if config else {},
            "engine": config.engine if config else "", "twilio_status": "ringing", "is_test": is_test,
        },
    )
    if not created and config and not call.config_snapshot:
        call.agent_config, call.config_snapshot, call.engine = config, config_snapshot(config), config.engine
        call.save(update_fields=["agent_config", "config_snapshot", "engine"])
    return call


def start_test_call(config: AgentConfig, placed_by: str) -> Call:
    """A staff member's call from the browser: a Call like a phone call's, marked as a test so it stays out
    of the headline figures. The SID looks like Twilio's (the bridge and the logs expect one)."""
    return Call.objects.create(
        twilio_call_sid="CA" + uuid.uuid4().hex, account_sid=settings.TWILIO_ACCOUNT_SID or "AC" + "0" * 32,
        is_test=True, agent_config=config, config_snapshot=config_snapshot(config), engine=config.engine,
        placed_by=placed_by[:150], twilio_status="in-progress",
    )


_TWILIO_STATUS = {
    "queued": Call.Status.RINGING, "initiated": Call.Status.RINGING, "ringing": Call.Status.RINGING,
    "in-progress": Call.Status.IN_PROGRESS, "answered": Call.Status.IN_PROGRESS,
    "completed": Call.Status.COMPLETED, "busy": Call.Status.BUSY, "failed": Call.Status.FAILED,
    "no-answer": Call.Status.NO_ANSWER, "canceled": Call.Status.CANCELED,
}


def _rank(status: str) -> int:
    return 2 if status in Call.TERMINAL else (1 if status == Call.Status.IN_PROGRESS else 0)


@transaction.atomic
def apply_status_callback(call_sid: str, twilio_status: str, duration_s: int | None = None,
                          at: datetime | None = None) -> Call | None:
    """Record a Twilio status callback. Duplicates and out-of-order callbacks never move a call backwards.
    A call that ends while no stream of the bridge holds it (the caller hung up during a transfer, or before the
    agent's stream after a failed one was open) gets its end recorded here, once."""
    status = _TWILIO_STATUS.get(twilio_status)
    if status is None:
        raise ValueError(f"unknown CallStatus {twilio_status!r}")
    call = Call.objects.select_for_update().filter(twilio_call_sid=call_sid).first()
    if call is None:
        return None
    now = timezone.now()
    fields = []
    if _rank(status) > _rank(call.status):
        call.status = status
        fields.append("status")
    if call.twilio_status_at is None or (at or now) >= call.twilio_status_at:
        call.twilio_status, call.twilio_status_at = twilio_status, at or now
        fields += ["twilio_status", "twilio_status_at"]
    if status in Call.TERMINAL:
        if not call.end_reason and call.transfer_state in AWAITING_TRANSFER:
            mark_ended(call, Call.EndReason.CALLER_HANGUP, at or now)
            fields += ["end_reason", "ended_at", "duration_s", "cost_usd"]
        if call.ended_at is None:
            call.ended_at = at or now
            fields.append("ended_at")
        if duration_s is not None and call.duration_s != duration_s:
            call.duration_s = duration_s
            fields.append("duration_s")
    if fields:
        call.save(update_fields=sorted(set(fields)))
    return call


# The transfer states in which no stream holds the call but the caller is still on the line.
AWAITING_TRANSFER = frozenset({Call.TransferState.DIALING, Call.TransferState.RETURNING})


def claim_stream(call_sid: str, stream_sid: str, instance: str, stream_number: int = 1) -> Call | None:
    """Mark the call's stream token used. Returns None when it was already used (a replay) or the call is
    unknown: the token is single-use, enforced by one conditional UPDATE.

    A call whose transfer was not answered waits for a second stream (`TransferState.RETURNING`, set by
    `calls.transfers`): that one is claimed once too, and the row comes back with `conversation` (its caller and
    agent events so far, in order) prefetched, for the agent to carry on. `stream_number` is the token's: only the
    stream the call waits for can be claimed, so a token minted for an earlier stream is refused."""
    now = timezone.now()
    live = Call.objects.filter(twilio_call_sid=call_sid).exclude(status__in=Call.TERMINAL)
    claimed = resumed = 0
    if stream_number == 1:
        claimed = live.filter(stream_token_used_at__isnull=True).update(
            stream_token_used_at=now, stream_sid=stream_sid, started_at=now, stream_started_at=now, stream_count=1,
            bridge_instance=instance, status=Call.Status.IN_PROGRESS,
        )
    else:
        resumed = live.filter(transfer_state=Call.TransferState.RETURNING, stream_count=stream_number - 1).update(
            stream_sid=stream_sid, stream_started_at=now, stream_count=F("stream_count") + 1,
            bridge_instance=instance, transfer_state=Call.TransferState.RETURNED,
        )
    if not claimed and not resumed:
        return None
    # From here on every log line of this stream names the call (the caller's context gets this binding back
    # from sync_to_async).
    logs.bind(call_sid=call_sid, stream_sid=stream_sid)
    calls = Call.objects.filter(twilio_call_sid=call_sid)
    if resumed:
        conversation = CallEvent.objects.filter(kind__in=(CallEvent.Kind.CALLER, CallEvent.Kind.AGENT)).order_by("seq")
        calls = calls.prefetch_related(Prefetch("events", queryset=conversation, to_attr="conversation"))
    return calls.get()


FAILED_END_REASONS = frozenset({Call.EndReason.UPSTREAM_ERROR, Call.EndReason.NOT_CONFIGURED,
                                Call.EndReason.PROTOCOL_ERROR})


def status_after(end_reason: str) -> str:
    """The status a call the bridge ended for `end_reason` is recorded with."""
    return Call.Status.FAILED if end_reason in FAILED_END_REASONS else Call.Status.COMPLETED


def _stream_seconds(call: Call, until: datetime) -> int | None:
    """The agent's seconds so far: the streams before, plus the current one up to `until` (None: no stream yet)."""
    if call.stream_started_at is None:
        return call.agent_seconds
    return (call.agent_seconds or 0) + max(0, int((until - call.stream_started_at).total_seconds()))


def mark_ended(call: Call, end_reason: str, at: datetime) -> None:
    """The call's one real end (not saved): reason, end time, whole duration, status and cost. Fills only what is
    still empty, so a later or repeated end changes nothing."""
    if not call.end_reason:
        call.end_reason = end_reason
    if call.ended_at is None:
        call.ended_at = at
    if call.started_at and call.duration_s is None:
        call.duration_s = max(0, int((call.ended_at - call.started_at).total_seconds()))
    if call.status not in Call.TERMINAL:
        call.status = status_after(call.end_reason)
    call.cost_usd = call_cost_usd(call)


def _hands_over_to_a_transfer(call: Call, end_reason: str) -> bool:
    """The bridge's stream ends for a transfer the webhook is about to <Dial>: the call is not over."""
    return (end_reason == Call.EndReason.TRANSFERRED and not call.end_reason and call.status not in Call.TERMINAL
            and bool((call.config_snapshot or {}).get("transfer_number")))


def finish_call(call_id: int, end_reason: str, usage: dict[str, Any] | None = None,
                transfer_summary: str = "") -> Call:
    """The bridge's end of a stream: usage so far (the session's running total over the call's streams), the
    agent's seconds and, for a transfer, the summary the person taking it hears. Idempotent. Returns the row.

    Usually the call's end too (reason, end time, duration, cost). Not for a transfer to a number: the caller
    waits on the <Dial>, and the call ends when the transfer does (answered, or not and no return to the agent,
    `calls.transfers`), or with the agent's next stream."""
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        now = timezone.now()
        if usage:
            call.usage = usage
            call.input_tokens = int(usage.get("input_tokens", 0))
            call.output_tokens = int(usage.get("output_tokens", 0))
        if _hands_over_to_a_transfer(call, end_reason):
            if call.transfer_state != Call.TransferState.DIALING:  # once per transfer
                call.agent_seconds = _stream_seconds(call, now)
                call.transfer_state, call.transfer_dial_status = Call.TransferState.DIALING, ""
            if transfer_summary:
                call.transfer_summary = transfer_summary  # the latest transfer's (a call may try again)
            call.cost_usd = call_cost_usd(call)
        else:
            if call.ended_at is None:
                call.agent_seconds = _stream_seconds(call, now)
            if transfer_summary and not call.transfer_summary:
                call.transfer_summary = transfer_summary
            mark_ended(call, end_reason, now)
        call.save()
    return call


COST_QUANTUM = Decimal("0.0001")  # Call.cost_usd keeps four decimal places


def call_engine(call: Call) -> str:
    """The engine a call ran on: the row's, else its snapshot's; calls from before engines were Realtime."""
    return call.engine or (call.config_snapshot or {}).get("engine") or AgentConfig.Engine.REALTIME


def call_cost_usd(call: Call) -> Decimal | None:
    """The call's estimated OpenAI cost from its usage and frozen config (calls.pricing); None when the
    price table does not know its model (logged: add the model to calls/prices.toml)."""
    if call.end_reason == Call.EndReason.NOT_CONFIGURED:
        return Decimal(0)  # no OpenAI session was opened
    snapshot = call.config_snapshot or {}
    engine = call_engine(call)
    model = snapshot.get("model") or pricing.DEFAULT_MODELS.get(engine, "")
    # The agent's own seconds: a transfer's ringing and the person's conversation open no OpenAI session.
    seconds = call.agent_seconds if call.agent_seconds is not None else call.duration_s
    try:
        cost = pricing.call_cost(
            pricing.load_prices(), engine=engine, model=model, usage=call.usage, duration_s=seconds,
            transcription_model=snapshot.get("transcription_model"), backend_model=snapshot.get("backend_model"),
        )
    except pricing.PriceError as exc:
        log.warning("call %s: no cost estimate: %s", call.twilio_call_sid, exc)
        return None
    return cost.quantize(COST_QUANTUM)


def save_recording(call_id: int, wav: bytes | IO[bytes]) -> str:
    """Store a call's WAV (bytes or an open file) through the default storage (S3 in AWS, files locally) and point
    the call at it. Returns the stored name. Runs after the call, in a thread: never on the audio path.

    A later stream of the call (after a transfer nobody took) is joined to the recording so far, at its place on
    the call's timeline (the transfer's ringing is silence), so that the call keeps one recording."""
    call = Call.objects.only("pk", "twilio_call_sid", "recording", "stream_count", "started_at",
                             "stream_started_at").get(pk=call_id)
    earlier = call.recording.name if call.recording and call.stream_count > 1 else ""
    with tempfile.TemporaryFile() as joined:
        if earlier:
            offset_s = (call.stream_started_at - call.started_at).total_seconds() \
                if call.stream_started_at and call.started_at else 0.0
            _join_recordings(earlier, io.BytesIO(wav) if isinstance(wav, bytes) else wav, offset_s, joined)
            joined.seek(0)
            content = File(joined)
        else:
            content = ContentFile(wav) if isinstance(wav, bytes) else File(wav)
        name = call.recording.field.generate_filename(call, f"{call.twilio_call_sid}.wav")
        name = default_storage.save(name, content)
    if not Call.objects.filter(pk=call_id).update(recording=name):  # the call was deleted meanwhile
        default_storage.delete(name)
    elif earlier and earlier != name:
        delete_recording_file(earlier)
    return name


RECORDING_COPY_FRAMES = 80_000  # 10 s at 8 kHz per read: the WAVs are copied, never held whole


def _join_recordings(earlier_name: str, later: IO[bytes], offset_s: float, out: IO[bytes]) -> None:
    """Write the stored WAV, silence up to `offset_s` into the call, then `later` (same format), up to the
    recording's length limit."""
    limit = settings.RECORDING_MAX_MINUTES * 60
    with default_storage.open(earlier_name, "rb") as stored, wave.open(stored, "rb") as first, \
            wave.open(later, "rb") as second, wave.open(out, "wb") as joined:
        joined.setparams(first.getparams())
        rate, frame_bytes = first.getframerate(), first.getsampwidth() * first.getnchannels()
        room = int(limit * rate)
        for source in (first, None, second):
            if source is None:  # the gap: the transfer's ringing, on the call's timeline
                gap = min(room, max(0, int(offset_s * rate) - first.getnframes()))
                while gap > 0:
                    block = min(gap, RECORDING_COPY_FRAMES)
                    joined.writeframesraw(bytes(block * frame_bytes))
                    gap, room = gap - block, room - block
                continue
            while room > 0 and (frames := source.readframes(min(room, RECORDING_COPY_FRAMES))):
                joined.writeframesraw(frames)
                room -= len(frames) // frame_bytes


def delete_recording_file(name: str) -> None:
    """Remove a deleted call's recording from storage; a failure is logged with the name, never raised (the
    call row is already gone)."""
    try:
        default_storage.delete(name)
    except Exception:  # S3 or disk trouble: the orphan is named in the log for a manual clean-up
        log.exception("could not delete recording %s", name)


def median_reply_ms(events: Iterable[dict[str, Any]]) -> int | None:
    """How long the caller typically waited for the agent's answer: the median of the `reply_ms` the bridge puts
    on agent transcript events (end of the caller's turn to the answer's first audio; bridge.session)."""
    waits = [event["data"]["reply_ms"] for event in events
             if event["kind"] == CallEvent.Kind.AGENT and type(event["data"].get("reply_ms")) is int]
    return round(statistics.median(waits)) if waits else None


def add_events(call_id: int, events: Iterable[dict[str, Any]]) -> int:
    """Append events (kind, t_ms, text, data, seq) in one batch; a seq already stored is skipped,
    so a retried batch after a database hiccup never duplicates lines."""
    rows = [
        CallEvent(call_id=call_id, seq=e["seq"], kind=e["kind"], t_ms=max(0, int(e.get("t_ms", 0))),
                  text=e.get("text", ""), data=e.get("data") or {})
        for e in events
    ]
    CallEvent.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


# Events written after the bridge is done with a stream (by the webhook) number from AFTER_STREAM_SEQ on within
# that stream's block: the bridge's last batch may still be on its way, and its seqs (1, 2, … per stream) must
# never collide with ours. Each stream of a call (a second one after a failed transfer) has its own block, so
# its events sort after everything before it, and a batch of an earlier stream never hides a later one's.
AFTER_STREAM_SEQ = 1_000_000
SEQS_PER_STREAM = 2 * AFTER_STREAM_SEQ


def stream_seq_base(stream_number: int) -> int:
    """The seq the bridge's events of a call's `stream_number`-th stream (1, 2, …) count on from."""
    return max(0, stream_number - 1) * SEQS_PER_STREAM


def add_status_event(call_id: int, text: str, data: dict[str, Any]) -> None:
    """A status line about what happened after the media stream (e.g. a transfer's outcome), after every
    event of the stream; the seq is taken under a lock on the call row."""
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id).only("pk", "stream_count", "started_at").first()
        if call is None:
            return
        events = CallEvent.objects.filter(call_id=call_id)
        last_seq = events.order_by("-seq").values_list("seq", flat=True).first() or 0
        t_ms = events.order_by("-t_ms").values_list("t_ms", flat=True).first() or 0
        if call.started_at is not None:  # the call's clock; the bridge's last events may not be stored yet
            t_ms = max(t_ms, int((timezone.now() - call.started_at).total_seconds() * 1000))
        floor = stream_seq_base(call.stream_count) + AFTER_STREAM_SEQ
        CallEvent.objects.create(call_id=call_id, seq=max(last_seq + 1, floor), kind=CallEvent.Kind.STATUS,
                                 t_ms=t_ms, text=text, data=data)


LIVE_STATUSES = (Call.Status.RINGING, Call.Status.IN_PROGRESS)


def purgeable_calls(cutoff: datetime) -> QuerySet[Call]:
    """Ended calls created before `cutoff`; live calls are never purged, however old."""
    return Call.objects.filter(created_at__lt=cutoff).exclude(status__in=LIVE_STATUSES)


def purge_calls(older_than: timedelta, batch_size: int = 1000) -> tuple[int, int]:
    """Delete ended calls older than `older_than` with their events, in bounded batches.
    Returns (calls, events) deleted."""
    cutoff = timezone.now() - older_than
    calls = events = 0
    while True:
        ids = list(purgeable_calls(cutoff).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return calls, events
        with transaction.atomic():
            # The status filter is applied again in the DELETE itself, so nothing live slips in.
            _, per_model = purgeable_calls(cutoff).filter(pk__in=ids).delete()
        calls += per_model.get(Call._meta.label, 0)
        events += per_model.get(CallEvent._meta.label, 0)
