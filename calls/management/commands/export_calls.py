"""Export calls with their config, timings, usage, estimated cost and events, one record per call, for audits.

    manage.py export_calls --format jsonl --since 2026-01-01 --until 2026-01-31 --output calls.jsonl
    manage.py export_calls --format csv --mask-numbers > calls.csv

Numbers are kept by default (an audit needs them); `--mask-numbers` hides the middle digits.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Prefetch, QuerySet

from calls.management.commands._maintenance import parse_window
from calls.models import Call, CallEvent
from calls.services import call_engine, mask_phone

CSV_COLUMNS = [
    "call_sid",
    "from_number",
    "to_number",
    "direction",
    "engine",
    "config_id",
    "config_name",
    "config_revision",
    "model",
    "status",
    "end_reason",
    "created_at",
    "started_at",
    "ended_at",
    "duration_s",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "usage",
    "event_count",
    "transcript",
]
TRANSCRIPT_KINDS = (CallEvent.Kind.CALLER, CallEvent.Kind.AGENT)
CHUNK_SIZE = 200  # calls fetched per round trip; their events come with them in one extra query


def export_queryset(since: datetime | None, until: datetime | None) -> QuerySet[Call]:
    calls = Call.objects.select_related("agent_config").prefetch_related(
        Prefetch("events", queryset=CallEvent.objects.order_by("seq"))
    )
    if since:
        calls = calls.filter(created_at__gte=since)
    if until:
        calls = calls.filter(created_at__lt=until)
    return calls.order_by("created_at", "pk")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def transcript_text(events: list[CallEvent]) -> str:
    """The conversation as "caller: …" / "agent: …" lines, in order."""
    return "\n".join(f"{e.kind}: {e.text}" for e in events if e.kind in TRANSCRIPT_KINDS and e.text)


def call_record(call: Call, mask_numbers: bool = False) -> dict[str, Any]:
    """One call as a JSON-ready dict. The config comes from the snapshot frozen at call time, so
    later edits or a deleted config do not rewrite history."""
    snapshot = call.config_snapshot or {}
    events = list(call.events.all())  # prefetched, already ordered by seq
    number = mask_phone if mask_numbers else (lambda n: n)
    record = {
        "call_sid": call.twilio_call_sid,
        "account_sid": call.account_sid,
        "stream_sid": call.stream_sid,
        "from_number": number(call.from_number),
        "to_number": number(call.to_number),
        "direction": call.direction,
        "engine": call_engine(call),
        "config": {
            "id": snapshot.get("config_id", call.agent_config_id),
            "name": snapshot.get("name", call.agent_config.name if call.agent_config else None),
            "revision": snapshot.get("revision"),
            "model": snapshot.get("model"),
        },
        "status": call.status,
        "twilio_status": call.twilio_status,
        "end_reason": call.end_reason,
        "created_at": _iso(call.created_at),
        "started_at": _iso(call.started_at),
        "ended_at": _iso(call.ended_at),
        "duration_s": call.duration_s,
        "bridge_instance": call.bridge_instance,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        # The estimated OpenAI cost (calls.pricing, stored when the call ended); null when not estimated.
        "cost_usd": float(call.cost_usd) if call.cost_usd is not None else None,
        "usage": call.usage or {},
        "events": [
            {"seq": e.seq, "kind": e.kind, "t_ms": e.t_ms, "text": e.text, "data": e.data} for e in events
        ],
        "transcript": transcript_text(events),
    }
    if call.recording:
        record["recording"] = call.recording.name  # the file in the default storage (S3 key or local path)
    return record


def csv_row(record: dict[str, Any]) -> list[Any]:
    config = record["config"]
    flat = {
        **record,
        "config_id": config["id"],
        "config_name": config["name"],
        "config_revision": config["revision"],
        "model": config["model"],
        "usage": json.dumps(record["usage"], sort_keys=True),
        "event_count": len(record["events"]),
    }
    # Every transcript line starts with its speaker, so no cell can open with a spreadsheet formula.
    return ["" if flat[c] is None else flat[c] for c in CSV_COLUMNS]


def write_jsonl(records: Iterator[dict[str, Any]], write: Callable[[str], Any]) -> int:
    count = 0
    for record in records:
        write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def write_csv(records: Iterator[dict[str, Any]], write: Callable[[str], Any]) -> int:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> None:
        write(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()

    writer.writerow(CSV_COLUMNS)
    flush()
    count = 0
    for record in records:
        writer.writerow(csv_row(record))
        flush()
        count += 1
    return count


class Command(BaseCommand):
    help = "Export calls (config, status, timings, usage, events and transcript), one record per call."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl",
                            help="jsonl: one JSON object per call with its events (default); csv: one row per call.")
        parser.add_argument("--since", help="Calls created at or after this date/time (YYYY-MM-DD[THH:MM]).")
        parser.add_argument(
            "--until", help="Calls created before this date/time; a bare date includes that day."
        )
        parser.add_argument("--output", "-o", help="Write to this file instead of stdout.")
        parser.add_argument("--mask-numbers", action="store_true", help="Hide the middle digits of numbers.")

    def handle(self, *args: Any, **options: Any) -> None:
        since, until = parse_window(options["since"], options["until"])
        calls = export_queryset(since, until).iterator(chunk_size=CHUNK_SIZE)
        records = (call_record(call, options["mask_numbers"]) for call in calls)
        write_records = write_csv if options["format"] == "csv" else write_jsonl
        path = options["output"]
        if path:
            try:
                with open(path, "w", encoding="utf-8", newline="") as out:
                    count = write_records(records, out.write)
            except OSError as exc:
                raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
        else:
            try:
                count = write_records(records, lambda text: self.stdout.write(text, ending=""))
            except BrokenPipeError:
                # The reader went away (`| head`): stop quietly, and keep Python's exit-time flush of
                # stdout from raising again.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
        # The count goes to stderr so that stdout stays a clean export.
        self.stderr.write(f"exported {count} call(s)" + (f" to {path}" if path else ""), style_func=str)
