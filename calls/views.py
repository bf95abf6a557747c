"""The staff dashboard: live calls, call history, a call's transcript and how to place a test call."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.core.management import get_commands, load_command_class
from django.core.paginator import Paginator
from django.db.models import Avg, Count, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from calls.forms import CallFilterForm
from calls.live_feed import call_summary
from calls.models import AgentConfig, Call, CallEvent, PhoneNumber

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
    day = Call.objects.filter(created_at__gte=since).aggregate(
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


def simulate_call_options() -> set[str] | None:
    """The option strings `manage.py simulate_call` accepts, read from its parser; None if it is missing."""
    app = get_commands().get("simulate_call")
    if app is None:
        return None
    try:
        parser = load_command_class(app, "simulate_call").create_parser("manage.py", "simulate_call")
    except Exception:
        return set()
    return {opt for action in parser._actions for opt in action.option_strings}


def simulate_call_command(number: str, options: set[str] | None) -> str:
    """The exact command line; options the installed command lacks are left out."""
    parts = ["python", "manage.py", "simulate_call"]
    if number and (options is None or "--to" in options):
        parts += ["--to", number]
    if options and "--out" in options:
        parts += ["--out", "reply.wav"]
    return " ".join(parts)


@dashboard_view
@require_GET
def test_call(request: HttpRequest) -> HttpResponse:
    configs = list(AgentConfig.objects.prefetch_related("phone_numbers").order_by("-is_default", "name"))
    config = None
    if request.GET.get("config"):
        try:
            config = next(c for c in configs if str(c.pk) == request.GET["config"])
        except StopIteration:
            raise Http404("No such config.") from None
    elif configs:
        config = configs[0]
    numbers = [n for n in config.phone_numbers.all() if n.is_active] if config else []
    default = AgentConfig.objects.filter(is_default=True).first()
    chosen = request.GET.get("number", "")
    number = chosen if chosen in {n.number for n in numbers} else (numbers[0].number if numbers else "")
    options = simulate_call_options()
    unrouted_note = ""
    if config and not numbers:
        if config.is_default:
            unrouted_note = (
                "This config has no number of its own; as the default it answers any number without a route."
            )
            number = "+15555550100"  # any number without a route reaches the default
        else:
            unrouted_note = (
                f"“{config}” has no active number, so a test call would reach the default config"
                f"{f' (“{default}”)' if default else ''}. Route a number to it first."
            )
    return render(
        request,
        "dashboard/test_call.html",
        {
            "configs": configs,
            "config": config,
            "numbers": numbers,
            "number": number,
            "nav": "test",
            "command": simulate_call_command(number, options),
            "command_missing": options is None,
            "unrouted_note": unrouted_note,
            "all_numbers": PhoneNumber.objects.filter(is_active=True).count(),
        },
    )
