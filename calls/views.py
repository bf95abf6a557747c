"""The staff dashboard: live calls, call history, a call's transcript and how to place a test call."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Avg, Count, Exists, OuterRef, Prefetch, Q, QuerySet, Sum
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from calls import outbound, services, stream_token
from calls.checks import answering_problems
from calls.forms import CallFilterForm, PlaceCallForm
from calls.live_feed import call_summary
from calls.models import AgentConfig, Call, CallEvent

LIVE_STATUSES = (Call.Status.RINGING, Call.Status.IN_PROGRESS)
KIND_LABELS = dict(CallEvent.Kind.choices)
TURN_KINDS = {CallEvent.Kind.CALLER, CallEvent.Kind.AGENT}


def event_summary(kind: str, text: str, data: dict[str, Any]) -> str:
    """One line for a system event; tool calls often carry their name only in data."""
    if text:
        return text
    parts = [str(data[k]) for k in ("name", "arguments", "output", "error", "message", "digit") if data.get(k)]
    return " · ".join(parts)


def event_dict(event: CallEvent) -> dict[str, Any]:
    """An event as the transcript template and the browser render it (same shape as the live feed's)."""
    return {
        "seq": event.seq,
        "kind": event.kind,
        "t_ms": event.t_ms,
        "text": event.text,
        "data": event.data or {},
        "label": KIND_LABELS.get(event.kind, event.kind),
        "is_turn": event.kind in TURN_KINDS,
        "summary": event_summary(event.kind, event.text, event.data or {}),
    }


def event_dicts(events: Iterable[CallEvent]) -> list[dict[str, Any]]:
    return [event_dict(e) for e in events]


def page(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """A dashboard page, with a banner when calls cannot be answered right now (no OpenAI key, OpenAI
    unreachable: the probe is cached for a minute)."""
    return render(request, template, {"answering_problems": answering_problems(), **context})


VIEW_CALLS = "calls.view_call"
LISTEN_RECORDINGS = "calls.listen_recording"


def dashboard_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff only (others go to the admin login), and only those allowed to see calls in the admin too:
    transcripts carry callers' personal data."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm(VIEW_CALLS):
            raise PermissionDenied("Viewing calls needs the “Can view call” permission.")
        return view(request, *args, **kwargs)

    return staff_member_required(guarded)


def _live_calls() -> list[Call]:
    return list(
        Call.objects.filter(status__in=LIVE_STATUSES).select_related("agent_config").order_by("-created_at")[:100]
    )


@dashboard_view
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    since = timezone.now() - timedelta(hours=24)
    last_day = Call.objects.filter(created_at__gte=since)
    day = last_day.filter(is_test=False).aggregate(
        total=Count("id"),
        completed=Count("id", filter=Q(status=Call.Status.COMPLETED)),
        failed=Count("id", filter=Q(status=Call.Status.FAILED)),
        avg_duration=Avg("duration_s"),
        tokens_in=Sum("input_tokens"),
        tokens_out=Sum("output_tokens"),
    )
    day["tokens"] = (day.pop("tokens_in") or 0) + (day.pop("tokens_out") or 0)
    day["test_calls"] = last_day.filter(is_test=True).count()  # shown, but not in the figures
    recent = Call.objects.exclude(status__in=LIVE_STATUSES).select_related("agent_config").order_by("-created_at")[:10]
    return page(
        request,
        "dashboard/index.html",
        {
            "live_calls": _live_calls(),
            "recent_calls": recent,
            "day": day,
            "nav": "live",
        },
    )


@dashboard_view
@require_GET
def live_calls_partial(request: HttpRequest) -> HttpResponse:
    """The live-calls table alone: the page swaps it in on a live event or a poll."""
    return render(request, "dashboard/_live_calls.html", {"live_calls": _live_calls()})


def filtered_calls(form: CallFilterForm) -> QuerySet[Call] | None:
    """The calls the history filters select, newest first; None when the filters are invalid (an impossible
    date range lists nothing, not everything)."""
    calls = Call.objects.select_related("agent_config").order_by("-created_at")
    if not form.is_bound:
        return calls
    if not form.is_valid():
        return None
    f = form.cleaned_data
    if f["q"]:
        q = f["q"].strip()
        said = CallEvent.objects.filter(call=OuterRef("pk"), kind__in=TURN_KINDS, text__icontains=q)
        calls = calls.filter(
            Q(twilio_call_sid__icontains=q)
            | Q(from_number__icontains=q)
            | Q(to_number__icontains=q)
            | Q(stream_sid__icontains=q)
            | Exists(said)
        )
    if f["status"]:
        calls = calls.filter(status=f["status"])
    if f["config"]:
        calls = calls.filter(agent_config=f["config"])
    if f["to"]:
        calls = calls.filter(to_number=f["to"])
    if f["end_reason"]:
        calls = calls.filter(end_reason=f["end_reason"])
    if f["since"]:
        calls = calls.filter(created_at__date__gte=f["since"])
    if f["until"]:
        calls = calls.filter(created_at__date__lte=f["until"])
    return calls


@dashboard_view
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    form = CallFilterForm(request.GET or None)
    calls = filtered_calls(form)
    query = request.GET.copy()
    query.pop("page", None)
    return page(
        request,
        "dashboard/history.html",
        {
            "form": form,
            "page": Paginator(calls if calls is not None else Call.objects.none(), 25).get_page(
                request.GET.get("page")),
            "invalid_filters": calls is None,
            "query": query.urlencode(),
            "nav": "history",
        },
    )


class _Echo:
    """A file that hands back what is written: csv.writer's rows become the streamed chunks."""

    def write(self, value: str) -> str:
        return value


def _export_lines(records: Iterator[dict[str, Any]], fmt: str) -> Iterator[str]:
    from calls.management.commands import export_calls

    if fmt == "jsonl":
        for record in records:
            yield json.dumps(record, ensure_ascii=False) + "\n"
        return
    writer = csv.writer(_Echo())
    yield writer.writerow(export_calls.CSV_COLUMNS)
    for record in records:
        yield writer.writerow(export_calls.csv_row(record))


EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


@dashboard_view
@require_GET
def export(request: HttpRequest, fmt: str) -> HttpResponse:
    """The calls the history filters select, as `export_calls` writes them (CSV or JSON lines), streamed."""
    from calls.management.commands import export_calls

    if fmt not in EXPORT_FORMATS:
        raise Http404("Export as csv or jsonl.")
    form = CallFilterForm(request.GET or None)
    calls = filtered_calls(form)
    if calls is None:
        return HttpResponse("The filters are invalid: fix them on the history page.", status=400,
                            content_type="text/plain; charset=utf-8")
    calls = calls.prefetch_related(Prefetch("events", queryset=CallEvent.objects.order_by("seq")))
    records = (export_calls.call_record(call) for call in calls.iterator(chunk_size=export_calls.CHUNK_SIZE))
    response = StreamingHttpResponse(_export_lines(records, fmt), content_type=EXPORT_FORMATS[fmt])
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="voiceops-calls-{stamp}.{fmt}"'
    return response


@dashboard_view
@require_GET
def call_detail(request: HttpRequest, pk: int) -> HttpResponse:
    call = get_object_or_404(Call.objects.select_related("agent_config"), pk=pk)
    events = event_dicts(call.events.order_by("seq"))
    return page(
        request,
        "dashboard/call_detail.html",
        {
            "call": call,
            "events": events,
            "last_seq": events[-1]["seq"] if events else -1,
            "reply_ms": services.median_reply_ms(events),
            "errors": [{"code": e["data"].get("code") or e["data"].get("type") or "error", "summary": e["summary"]}
                       for e in events if e["kind"] == CallEvent.Kind.ERROR],
            "nav": "history",
            "can_view_admin": request.user.has_perm("calls.view_call"),
            "can_listen": bool(call.recording) and request.user.has_perm(LISTEN_RECORDINGS),
            "labels": {
                "kinds": KIND_LABELS,
                "statuses": dict(Call.Status.choices),
                "end_reasons": dict(Call.EndReason.choices),
            },
        },
    )


@dashboard_view
@require_GET
def call_recording(request: HttpRequest, pk: int) -> HttpResponse:
    """A call's recording, for staff with the listen permission only. Local files are streamed from here (with
    byte ranges, so that the player can seek); on S3 the answer is a redirect to a signed, short-lived URL."""
    if not request.user.has_perm(LISTEN_RECORDINGS):
        raise PermissionDenied("Listening to recordings needs the “Can listen to call recordings” permission.")
    call = get_object_or_404(Call.objects.only("pk", "recording"), pk=pk)
    if not call.recording:
        raise Http404("This call has no recording.")
    storage, name = call.recording.storage, call.recording.name
    try:
        path = storage.path(name)
    except NotImplementedError:  # remote storage (S3): signed for RECORDING_URL_TTL_S seconds
        response: HttpResponse = HttpResponseRedirect(storage.url(name))
    else:
        response = _file_range_response(request, path, "audio/wav")
    response["Cache-Control"] = "private, no-store"
    return response


BYTE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
STREAM_BLOCK = 64 * 1024


def _file_range_response(request: HttpRequest, path: str, content_type: str) -> HttpResponse:
    """The file, or the single byte range the request asks for (206); 416 for a range outside it."""
    try:
        size = os.path.getsize(path)
    except OSError:
        raise Http404("The recording file is missing.") from None
    start, end, status = 0, size - 1, 200
    match = BYTE_RANGE.match(request.headers.get("Range", ""))
    if match and (match[1] or match[2]):
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
        else:  # a suffix: the last N bytes
            start = max(0, size - int(match[2]))
        if start > end:
            return HttpResponse(status=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
    response = StreamingHttpResponse(_read_range(path, start, end - start + 1), status=status,
                                     content_type=content_type)
    response["Accept-Ranges"] = "bytes"
    response["Content-Length"] = str(end - start + 1)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Disposition"] = f'inline; filename="{os.path.basename(path)}"'
    return response


def _read_range(path: str, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as file:
        file.seek(start)
        while length > 0:
            block = file.read(min(STREAM_BLOCK, length))
            if not block:
                return
            length -= len(block)
            yield block


@dashboard_view
@require_GET
def call_events(request: HttpRequest, pk: int) -> JsonResponse:
    """The polling fallback of the live transcript: the call and its events after `after`."""
    call = get_object_or_404(Call.objects.select_related("agent_config"), pk=pk)
    after = request.GET.get("after", "-1")
    try:
        after_seq = int(after)
    except ValueError:
        return JsonResponse({"error": "after must be an integer"}, status=400)
    events = call.events.filter(seq__gt=after_seq).order_by("seq")[:500]
    return JsonResponse({"call": call_summary(call), "events": event_dicts(events)})


@dashboard_view
@require_GET
def test_call(request: HttpRequest) -> HttpResponse:
    """Talk to an agent config from the browser, with the microphone (static/voiceops/test_call.js)."""
    configs = list(AgentConfig.objects.order_by("-is_default", "name"))
    config = configs[0] if configs else None
    if request.GET.get("config"):
        config = next((c for c in configs if str(c.pk) == request.GET["config"]), None)
        if config is None:
            raise Http404("No such config.")
    return page(request, "dashboard/test_call.html", {"configs": configs, "config": config, "nav": "test"})


@dashboard_view
@require_POST
def test_call_start(request: HttpRequest, config_id: int) -> JsonResponse:
    """A test call's Call row (is_test) and its single-use stream token, for the browser to open
    the bridge's Media Streams socket with."""
    config = get_object_or_404(AgentConfig, pk=config_id)
    call = services.start_test_call(config, placed_by=f"user:{request.user.get_username()}")
    token = stream_token.mint(call.twilio_call_sid, config.pk, browser=True)
    return JsonResponse({
        "call_id": call.pk,
        "call_sid": call.twilio_call_sid,
        "account_sid": call.account_sid,
        "token": token,
        "stream_url": f"{settings.BRIDGE_PUBLIC_URL}?{urlencode({'token': token})}",
        "call_url": reverse("dashboard:call", args=[call.pk]),
        "live_path": f"/dashboard/live?call={call.pk}",
    }, status=201)


PLACE_CALLS = "calls.place_call"


@dashboard_view
@require_http_methods(["GET", "POST"])
def place_call(request: HttpRequest) -> HttpResponse:
    """Staff with the “Can place outbound calls” permission have an agent call a number."""
    if not request.user.has_perm(PLACE_CALLS):
        raise PermissionDenied("Placing calls needs the “Can place outbound calls” permission.")
    form = PlaceCallForm(request.POST or None, initial={"config": AgentConfig.objects.filter(is_default=True).first()})
    refused: outbound.OutboundRefused | None = None
    if request.method == "POST" and form.is_valid():
        try:
            call = outbound.place_call(form.cleaned_data["to"], form.cleaned_data["config"].name,
                                       placed_by=f"user:{request.user.get_username()}")
        except outbound.OutboundRefused as exc:
            refused = exc
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Calling {call.to_number} with “{call.agent_config}”.")
            return redirect("dashboard:call", pk=call.pk)
    recent = (
        Call.objects.filter(direction=Call.Direction.OUTBOUND).select_related("agent_config").order_by("-created_at")[:10]
    )
    return page(request, "dashboard/place_call.html", {
        "form": form, "nav": "outbound", "recent_calls": recent,
        "failed_call": refused.call if refused else None,
    })
