"""The staff dashboard: live calls, call history, a call's transcript and how to place a test call."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Avg, Count, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from calls import outbound, services, stream_token
from calls.forms import CallFilterForm, PlaceCallForm
from calls.models import AgentConfig, Call, CallEvent
from calls.services import mask_phone

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


def call_summary(call: Call) -> dict[str, Any]:
    """The call as the live feed describes it (phone number of the caller masked)."""
    return {
        "id": call.pk,
        "sid": call.twilio_call_sid,
        "from": mask_phone(call.from_number),
        "to": call.to_number,
        "config": call.agent_config.name if call.agent_config else "",
        "status": call.status,
        "status_label": call.get_status_display(),
        "is_live": call.is_live,
        "started_at": call.started_at.isoformat() if call.started_at else None,
        "created_at": call.created_at.isoformat(),
        "duration_s": call.duration_s,
        "end_reason": call.end_reason,
        "end_reason_label": call.get_end_reason_display(),
        "cost_usd": str(call.cost_usd) if call.cost_usd is not None else None,
    }


VIEW_CALLS = "calls.view_call"


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
    day = Call.objects.filter(created_at__gte=since, is_test=False).aggregate(
        total=Count("id"),
        completed=Count("id", filter=Q(status=Call.Status.COMPLETED)),
        failed=Count("id", filter=Q(status=Call.Status.FAILED)),
        avg_duration=Avg("duration_s"),
        tokens_in=Sum("input_tokens"),
        tokens_out=Sum("output_tokens"),
    )
    day["tokens"] = (day.pop("tokens_in") or 0) + (day.pop("tokens_out") or 0)
    recent = Call.objects.exclude(status__in=LIVE_STATUSES).select_related("agent_config").order_by("-created_at")[:10]
    return render(
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


@dashboard_view
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    form = CallFilterForm(request.GET or None)
    calls = Call.objects.select_related("agent_config").order_by("-created_at")
    if form.is_bound and form.is_valid():
        f = form.cleaned_data
        if f["q"]:
            q = f["q"].strip()
            calls = calls.filter(
                Q(twilio_call_sid__icontains=q)
                | Q(from_number__icontains=q)
                | Q(to_number__icontains=q)
                | Q(stream_sid__icontains=q)
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
    page = Paginator(calls, 25).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboard/history.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "nav": "history",
        },
    )


@dashboard_view
@require_GET
def call_detail(request: HttpRequest, pk: int) -> HttpResponse:
    call = get_object_or_404(Call.objects.select_related("agent_config"), pk=pk)
    events = event_dicts(call.events.order_by("seq"))
    return render(
        request,
        "dashboard/call_detail.html",
        {
            "call": call,
            "events": events,
            "last_seq": events[-1]["seq"] if events else -1,
            "nav": "history",
            "can_view_admin": request.user.has_perm("calls.view_call"),
            "labels": {
                "kinds": KIND_LABELS,
                "statuses": dict(Call.Status.choices),
                "end_reasons": dict(Call.EndReason.choices),
            },
        },
    )


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
    return render(request, "dashboard/test_call.html", {"configs": configs, "config": config, "nav": "test"})


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
    return render(request, "dashboard/place_call.html", {
        "form": form, "nav": "outbound", "recent_calls": recent,
        "failed_call": refused.call if refused else None,
    })
