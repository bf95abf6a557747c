"""Django admin: agent configs (with revisions, diff and restore), numbers, tools and the call history."""

from __future__ import annotations

import difflib
import json
import logging
import re
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from calls import api, pricing, services
from calls.forms import AgentConfigAdminForm, DoNotCallNumberAdminForm, PhoneNumberAdminForm, ToolAdminForm
from calls.models import AgentConfig, AgentConfigRevision, ApiToken, Call, DoNotCallNumber, PhoneNumber, Tool
from calls.templatetags.voiceops import duration as format_duration
from calls.templatetags.voiceops import usd
from calls.views import event_dicts

log = logging.getLogger(__name__)


# --- the session the bridge will send --------------------------------------------------------------


def session_preview_payload(config: AgentConfig) -> tuple[dict[str, Any], str]:
    """What the bridge sends OpenAI first for this config, and a note on where it came from."""
    snapshot = services.config_snapshot(config)
    try:
        from bridge.call_config import CallConfig  # the bridge owns the events' exact shape
        from bridge.upstream import engine_for
    except ImportError:
        return snapshot, "The bridge's session builder is not installed; showing the config snapshot it reads."
    try:
        engine = engine_for(CallConfig.from_snapshot(snapshot, snapshot["model"]))
        if engine is None:
            return snapshot, f"This bridge has no {config.get_engine_display()} engine; showing the snapshot."
        event = json.loads(engine.opening()[0])
    except Exception:  # a preview must never break the config page
        log.exception("building the session for config %s failed", config.pk)
        return (
            snapshot,
            "Building the session event failed (see the server log); showing the snapshot.",
        )
    return event, f"The {event['type']} event the bridge sends when a call connects."


# --- revision diffs --------------------------------------------------------------------------------

_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")
_LONG_TEXT = 80


def _word_diff(before: str, after: str) -> tuple[SafeString, SafeString]:
    """Mark the words that changed inside one line pair."""
    a, b = _TOKENS.findall(before), _TOKENS.findall(after)
    old: list[str] = []
    new: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            old.append(escape("".join(a[i1:i2])))
            new.append(escape("".join(b[j1:j2])))
            continue
        if i2 > i1:
            old.append(f"<del>{escape(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            new.append(f"<ins>{escape(''.join(b[j1:j2]))}</ins>")
    return mark_safe("".join(old)), mark_safe("".join(new))  # noqa: S308 - every piece is escaped above


def text_diff_lines(before: str, after: str, context: int = 2) -> list[dict[str, Any]]:
    """A unified line diff of two texts with changed words marked; long unchanged runs are folded."""
    a, b = before.splitlines(), after.splitlines()
    lines: list[dict[str, Any]] = []
    opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            block = a[i1:i2]
            # Context only next to a change: before the first change and after the last there is none.
            head = block[:context] if index > 0 else []
            tail = block[-context:] if index < len(opcodes) - 1 else []
            if len(block) - len(head) - len(tail) <= 1:
                lines += [{"op": "ctx", "html": escape(line)} for line in block]
                continue
            lines += [{"op": "ctx", "html": escape(line)} for line in head]
            lines.append({"op": "gap", "html": f"⋯ {len(block) - len(head) - len(tail)} unchanged lines"})
            lines += [{"op": "ctx", "html": escape(line)} for line in tail]
        elif tag == "replace" and i2 - i1 == j2 - j1:
            pairs = [_word_diff(x, y) for x, y in zip(a[i1:i2], b[j1:j2], strict=True)]
            lines += [{"op": "del", "html": old} for old, _ in pairs]
            lines += [{"op": "ins", "html": new} for _, new in pairs]
        else:
            lines += [{"op": "del", "html": escape(line)} for line in a[i1:i2]]
            lines += [{"op": "ins", "html": escape(line)} for line in b[j1:j2]]
    return lines


def _field_label(name: str) -> str:
    """The label the edit form shows for a field, so diffs and the history say what staff saw."""
    field = AgentConfigAdminForm.base_fields.get(name)
    return str(field.label) if field is not None and field.label else name


def changed_summary(revision: AgentConfigRevision) -> str:
    if revision.number == 1:
        return "(created)"
    return ", ".join(_field_label(f) for f in revision.changed_fields) or "—"


def _display(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def build_field_diffs(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the revision page: long text as a line diff, tools as added/removed, the rest old → new."""
    rows = []
    for field, before, after in services.revision_diff(old, new):
        row: dict[str, Any] = {"field": field, "label": _field_label(field)}
        if field == "tools":
            was, now = set(before or []), set(after or [])
            row.update(kind="list", added=sorted(now - was), removed=sorted(was - now), kept=sorted(now & was))
        elif (
            isinstance(before, str | None)
            and isinstance(after, str)
            and ("\n" in (before or "") + after or max(len(before or ""), len(after)) > _LONG_TEXT)
        ):
            row.update(kind="text", lines=text_diff_lines(before or "", after), full_text=after)
        else:
            row.update(kind="value", before=_display(before), after=_display(after))
        rows.append(row)
    return rows


# --- agent configs ---------------------------------------------------------------------------------


@admin.register(AgentConfig)
class AgentConfigAdmin(admin.ModelAdmin):
    form = AgentConfigAdminForm
    list_display = ("name", "engine", "model", "voice", "is_active", "is_default", "number_count", "last_edited")
    list_display_links = ("name",)
    list_filter = ("is_active", "is_default", "engine", "voice", "turn_detection")
    search_fields = ("name", "instructions", "greeting")
    filter_horizontal = ("tools",)
    readonly_fields = ("session_preview", "revision_history", "cost_estimate")
    save_on_top = True
    fieldsets = (
        ("Prompt", {"fields": ("name", "instructions", "greeting")}),
        (
            "Engine and voice",
            {
                "description": "Realtime is billed by tokens; GPT-Live per minute (its model owns turn taking, so "
                "the turn-taking settings below apply to Realtime only).",
                "fields": ("engine", "model", "voice", "speed"),
            },
        ),
        (
            "Turn taking",
            {
                "description": "Server VAD ends the caller's turn after silence (threshold, padding and "
                "silence apply); semantic VAD judges when the caller has finished (eagerness applies).",
                "fields": (
                    "turn_detection",
                    "vad_threshold",
                    "vad_prefix_padding_ms",
                    "vad_silence_duration_ms",
                    "idle_timeout_ms",
                    "eagerness",
                    "interrupt_response",
                    "noise_reduction",
                ),
            },
        ),
        (
            "GPT-Live backend",
            {
                "description": "GPT-Live delegates tool calls to a Responses model; these apply to GPT-Live only.",
                "fields": ("backend_model", "backend_instructions"),
            },
        ),
        ("Transcription", {"fields": ("transcription_enabled", "transcription_model")}),
        ("Limits", {"fields": ("max_output_tokens", "max_call_minutes")}),
        (
            "Tools",
            {
                "description": "end_call lets the agent hang up; transfer_call needs a transfer number (see Routing).",
                "fields": ("tools",),
            },
        ),
        ("Routing", {"fields": ("is_default", "is_active", "transfer_number", "transfer_mode", "on_failed_transfer")}),
        (
            "Outbound calls",
            {
                "description": "Calls voiceops places (place_call, the dashboard, the API): answering machines, "
                "calling hours in the config's time zone, and how many may run at once.",
                "fields": (
                    "machine_detection",
                    "voicemail_message",
                    ("calling_hours_start", "calling_hours_end"),
                    "calling_time_zone",
                    "max_concurrent_outbound",
                ),
            },
        ),
        (
            "Recording and keypad",
            {
                "description": "The consent announcement is spoken by Twilio, word for word, before the agent "
                "starts (whatever the engine). Keypad keys not in the menu tell the model which key was pressed.",
                "fields": ("record_calls", "consent_message", "dtmf_actions"),
            },
        ),
        ("Save", {"fields": ("change_note",)}),
    )
    change_form_template = "admin/calls/agentconfig/change_form.html"

    class Media:
        css = {"all": ("voiceops/admin.css",)}

    def get_fieldsets(self, request: HttpRequest, obj: AgentConfig | None = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets += [
                ("Cost", {"fields": ("cost_estimate",)}),
                ("Session preview", {"fields": ("session_preview",)}),
                ("Revisions", {"fields": ("revision_history",)}),
            ]
        return fieldsets

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentConfig]:
        latest = AgentConfigRevision.objects.filter(config=OuterRef("pk")).order_by("-number")
        return (
            super()
            .get_queryset(request)
            .annotate(
                number_count=Count("phone_numbers", distinct=True),
                last_editor=Subquery(latest.values("author__username")[:1]),
            )
        )

    @admin.display(description="Last edited", ordering="updated_at")
    def last_edited(self, obj: AgentConfig) -> str:
        when = date_format(timezone.localtime(obj.updated_at), "M j, H:i")
        editor = getattr(obj, "last_editor", None)
        return f"{when} by {editor}" if editor else when

    @admin.display(description="Numbers", ordering="number_count")
    def number_count(self, obj: AgentConfig) -> int:
        return getattr(obj, "number_count", 0)

    @admin.display(description="Session the bridge will send")
    def session_preview(self, obj: AgentConfig) -> SafeString:
        payload, note = session_preview_payload(obj)
        return format_html(
            '<p class="vo-note">{}</p><pre class="vo-json">{}</pre>',
            note,
            json.dumps(payload, indent=2, ensure_ascii=False),
        )

    @admin.display(description="Estimate per minute")
    def cost_estimate(self, obj: AgentConfig) -> SafeString:
        try:
            openai, twilio = services.config_minute_cost(obj)
        except pricing.PriceError as exc:
            return format_html('<p class="vo-note">No estimate: {}</p>', exc)
        shape = (
            "a 3-minute call at the forecast's defaults: the caller speaks 40 %, the agent 50 %, 4 responses "
            "a minute, the whole conversation re-read on each, no caching, input transcription included"
            if obj.engine == AgentConfig.Engine.REALTIME
            else "billed per second of session, with a backend delegation every 2 minutes"
        )
        return format_html(
            '<p><strong>≈ {} a minute</strong> OpenAI ({} {}) + {} Twilio (inbound voice and Media Streams).</p>'
            '<p class="vo-note">For {}. Prices: calls/prices.toml; the whole month with AWS: '
            "<code>manage.py estimate_cost --calls N --minutes M</code>.</p>",
            usd(openai), obj.get_engine_display(), obj.model, usd(twilio), shape,
        )

    @admin.display(description="Recent revisions")
    def revision_history(self, obj: AgentConfig) -> SafeString:
        revisions = obj.revisions.select_related("author").order_by("-number")
        rows = [{"revision": r, "changed": changed_summary(r)} for r in revisions[:10]]
        return render_to_string(
            "admin/calls/agentconfig/_revisions.html",
            {"rows": rows, "total": revisions.count(), "config": obj},
        )

    def save_model(self, request: HttpRequest, obj: AgentConfig, form: ModelForm, change: bool) -> None:
        if obj.is_default:
            # One default at a time (a partial unique constraint): hand the flag over inside the admin's
            # transaction, so the old default loses it only if this save succeeds.
            previous = list(AgentConfig.objects.filter(is_default=True).exclude(pk=obj.pk))
            AgentConfig.objects.filter(pk__in=[p.pk for p in previous]).update(is_default=False)
            for other in previous:
                other.is_default = False
                services.record_revision(other, request.user, comment=f"Default moved to {obj.name}")
                messages.info(request, f"“{other}” is no longer the default config.")
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # After the tools (m2m) are saved, so a change of tools alone is a revision too.
        config = form.instance
        revision = services.record_revision(config, request.user, comment=form.cleaned_data.get("change_note", ""))
        if revision is not None:
            messages.info(request, f"Saved as revision {revision.number} of “{config}”.")
        if config.tools.filter(name="transfer_call").exists() and not config.transfer_number:
            messages.warning(
                request,
                "The transfer_call tool is enabled but there is no transfer number: "
                "the agent will not be offered the tool.",
            )
        if not AgentConfig.objects.filter(is_default=True).exists():
            messages.warning(request, "No config is the default: calls to numbers without a route will fail.")


# --- revisions -------------------------------------------------------------------------------------


@admin.register(AgentConfigRevision)
class AgentConfigRevisionAdmin(admin.ModelAdmin):
    """Read-only history. The change page is replaced by a diff view with a restore action."""

    list_display = ("revision_label", "config", "created_at", "author", "changed", "comment")
    list_display_links = ("revision_label",)
    list_filter = ("config",)
    list_select_related = ("config", "author")
    search_fields = ("config__name", "comment")
    date_hierarchy = "created_at"

    class Media:
        css = {"all": ("voiceops/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Revision", ordering="number")
    def revision_label(self, obj: AgentConfigRevision) -> str:
        return f"r{obj.number}"

    @admin.display(description="Changed fields")
    def changed(self, obj: AgentConfigRevision) -> str:
        return changed_summary(obj)

    def can_restore(self, request: HttpRequest) -> bool:
        return request.user.has_perm("calls.change_agentconfig")

    def get_urls(self) -> list[URLPattern]:
        restore = path(
            "<path:object_id>/restore/",
            self.admin_site.admin_view(self.restore_view),
            name="calls_agentconfigrevision_restore",
        )
        return [restore, *super().get_urls()]

    def _revision(self, request: HttpRequest, object_id: str) -> AgentConfigRevision:
        if not str(object_id).isdigit():
            raise Http404("No such revision.")
        revision = get_object_or_404(AgentConfigRevision.objects.select_related("config", "author"), pk=object_id)
        if not self.has_view_permission(request, revision):
            raise PermissionDenied
        return revision

    def _context(self, request: HttpRequest, revision: AgentConfigRevision, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "config_opts": AgentConfig._meta,
            "title": title,
            "revision": revision,
            "config": revision.config,
            "media": self.media,
        }

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        revision = self._revision(request, object_id)
        siblings = revision.config.revisions.order_by("number")
        previous = siblings.filter(number__lt=revision.number).last()
        following = siblings.filter(number__gt=revision.number).first()
        is_current = services.config_fields(revision.config) == revision.data
        context = self._context(request, revision, f"{revision.config} · revision {revision.number}")
        context.update(
            previous=previous,
            following=following,
            is_current=is_current,
            changes=build_field_diffs(previous.data if previous else None, revision.data),
            can_restore=self.can_restore(request) and not is_current,
        )
        return TemplateResponse(request, "admin/calls/agentconfigrevision/detail.html", context)

    def restore_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        revision = self._revision(request, object_id)
        if not self.can_restore(request):
            raise PermissionDenied
        detail_url = reverse("admin:calls_agentconfigrevision_change", args=[revision.pk])
        if request.method == "POST":
            try:
                config = services.restore_revision(revision, request.user)
            except ValidationError as exc:
                messages.error(request, f"Revision {revision.number} cannot be restored: {' '.join(exc.messages)}")
                return HttpResponseRedirect(detail_url)
            latest = config.revisions.order_by("-number").first()
            self.log_change(request, config, f"Restored revision {revision.number}")
            messages.success(
                request,
                f"Restored revision {revision.number} of “{config}” (saved as revision {latest.number}).",
            )
            return HttpResponseRedirect(reverse("admin:calls_agentconfig_change", args=[config.pk]))
        context = self._context(request, revision, f"Restore revision {revision.number} of {revision.config}?")
        context.update(
            changes=build_field_diffs(services.config_fields(revision.config), revision.data),
            detail_url=detail_url,
        )
        return TemplateResponse(request, "admin/calls/agentconfigrevision/restore_confirm.html", context)


# --- numbers and tools -----------------------------------------------------------------------------


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    form = PhoneNumberAdminForm
    list_display = ("number", "label", "agent_config", "is_active")
    list_filter = ("is_active", "agent_config")
    list_select_related = ("agent_config",)
    search_fields = ("number", "label")
    fields = ("number", "label", "agent_config", "is_active", "twilio_sid")


@admin.register(Tool)
class ToolAdmin(admin.ModelAdmin):
    form = ToolAdminForm
    list_display = ("name", "kind", "url", "timeout_s", "is_active", "config_count")
    list_filter = ("kind", "is_active")
    search_fields = ("name", "description", "url")

    class Media:
        css = {"all": ("voiceops/admin.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tool]:
        return super().get_queryset(request).annotate(config_count=Count("agent_configs", distinct=True))

    @admin.display(description="Used by", ordering="config_count")
    def config_count(self, obj: Tool) -> str:
        n = getattr(obj, "config_count", 0)
        return f"{n} config{'s' if n != 1 else ''}"

    @admin.display(description="Secret")
    def secret_hint(self, obj: Tool | None) -> str:
        env = obj.secret_env_name if obj and obj.name else "TOOL_SECRET_<NAME>"
        return (
            f"The bridge sends the value of {env} (environment or SSM) in the secret header. It is never stored here."
        )

    @staticmethod
    def _is_builtin(obj: Tool | None) -> bool:
        return obj is not None and obj.pk is not None and obj.kind == Tool.Kind.BUILTIN

    def get_fieldsets(self, request: HttpRequest, obj: Tool | None = None) -> Any:
        main = (None, {"fields": ("name", "kind", "description", "is_active")})
        arguments = ("Arguments", {"fields": ("parameters",)})
        if self._is_builtin(obj):
            return (main, arguments)
        http = ("HTTP", {"fields": ("url", "timeout_s", "secret_header_name", "secret_hint")})
        return (main, arguments, http)

    def get_readonly_fields(self, request: HttpRequest, obj: Tool | None = None) -> tuple[str, ...]:
        if self._is_builtin(obj):
            return ("name", "kind")  # the bridge implements them by name
        return ("secret_hint",)

    def has_delete_permission(self, request: HttpRequest, obj: Tool | None = None) -> bool:
        return not self._is_builtin(obj) and super().has_delete_permission(request, obj)


# --- calls -----------------------------------------------------------------------------------------


class ToNumberFilter(admin.SimpleListFilter):
    title = "dialled number"
    parameter_name = "to"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        labels = dict(PhoneNumber.objects.values_list("number", "label"))
        numbers = Call.objects.order_by().values_list("to_number", flat=True).distinct()[:50]
        return [(n, f"{n} ({labels[n]})" if labels.get(n) else n) for n in sorted(numbers) if n]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Call]) -> QuerySet[Call]:
        return queryset.filter(to_number=self.value()) if self.value() else queryset


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    """Calls are history: viewable, never editable; deletable only with the delete permission."""

    list_display = (
        "when",
        "caller",
        "to",
        "agent_config",
        "status",
        "call_duration",
        "end_reason",
        "tokens",
        "cost",
    )
    list_filter = ("status", "direction", "created_at", ToNumberFilter, "agent_config", "end_reason")
    search_fields = ("twilio_call_sid", "stream_sid", "from_number", "to_number")
    date_hierarchy = "created_at"
    list_select_related = ("agent_config",)
    list_per_page = 50
    readonly_fields = (
        "dashboard_link", "call_duration", "cost", "usage_pretty", "transcript", "snapshot_pretty", "recording_player",
    )
    fieldsets = (
        (
            "Call",
            {
                "fields": (
                    "dashboard_link",
                    "twilio_call_sid",
                    "stream_sid",
                    "account_sid",
                    ("from_number", "to_number"),
                    ("direction", "is_test"),
                    "agent_config",
                    ("status", "twilio_status"),
                    "end_reason",
                    ("transfer_state", "transfer_dial_status"),
                    "transfer_summary",
                    ("answered_by", "placed_by"),
                )
            },
        ),
        ("Timing", {"fields": ("created_at", "started_at", "ended_at", "call_duration", "bridge_instance",
                               ("stream_count", "stream_started_at", "agent_seconds"))}),
        ("Usage", {"fields": (("input_tokens", "output_tokens"), "cost", "usage_pretty")}),
        ("Transcript", {"fields": ("transcript",)}),
        ("Config snapshot", {"fields": ("snapshot_pretty",), "classes": ("collapse",)}),
    )

    class Media:
        css = {"all": ("voiceops/admin.css", "voiceops/transcript.css")}
        js = ("voiceops/recording.js",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_fieldsets(self, request: HttpRequest, obj: Call | None = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and obj.recording and request.user.has_perm("calls.listen_recording"):
            fieldsets.insert(1, ("Recording", {"fields": ("recording_player",)}))
        return fieldsets

    @admin.display(description="Recording")
    def recording_player(self, obj: Call) -> SafeString:
        return format_html(
            '<audio id="vo-recording" controls preload="metadata" src="{}"></audio>'
            '<div class="help">Left: caller · right: agent. Click a line of the conversation to hear it.</div>',
            reverse("dashboard:recording", args=[obj.pk]),
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # Nine columns and five filters need the width the navigation sidebar would take.
        return super().changelist_view(request, {"is_nav_sidebar_enabled": False, **(extra_context or {})})

    @admin.display(description="When", ordering="created_at")
    def when(self, obj: Call) -> str:
        return date_format(timezone.localtime(obj.created_at), "M j, H:i")

    @admin.display(description="To", ordering="to_number")
    def to(self, obj: Call) -> str:
        return obj.to_number

    @admin.display(description="From", ordering="from_number")
    def caller(self, obj: Call) -> str:
        return services.mask_phone(obj.from_number)

    @admin.display(description="Duration", ordering="duration_s")
    def call_duration(self, obj: Call) -> str:
        return format_duration(obj.duration_s) or "—"

    @admin.display(description="Tokens")
    def tokens(self, obj: Call) -> int:
        return obj.input_tokens + obj.output_tokens

    @admin.display(description="Cost (est.)", ordering="cost_usd")
    def cost(self, obj: Call) -> str:
        return usd(obj.cost_usd) or "—"

    @admin.display(description="Dashboard")
    def dashboard_link(self, obj: Call) -> SafeString:
        return format_html(
            '<a href="{}">Open in the dashboard{}</a>',
            reverse("dashboard:call", args=[obj.pk]),
            " (live)" if obj.is_live else "",
        )

    @admin.display(description="Usage detail")
    def usage_pretty(self, obj: Call) -> SafeString:
        if not obj.usage:
            return mark_safe("—")
        return format_html('<pre class="vo-json">{}</pre>', json.dumps(obj.usage, indent=2, ensure_ascii=False))

    @admin.display(description="Snapshot")
    def snapshot_pretty(self, obj: Call) -> SafeString:
        return format_html(
            '<pre class="vo-json">{}</pre>', json.dumps(obj.config_snapshot, indent=2, ensure_ascii=False)
        )

    @admin.display(description="Conversation")
    def transcript(self, obj: Call) -> SafeString:
        return render_to_string(
            "calls/_transcript.html", {"events": event_dicts(obj.events.order_by("seq")), "call": obj}
        )


# --- outbound: do-not-call list and API tokens -----------------------------------------------------


@admin.register(DoNotCallNumber)
class DoNotCallNumberAdmin(admin.ModelAdmin):
    form = DoNotCallNumberAdminForm
    list_display = ("number", "reason", "added_by", "created_at")
    search_fields = ("number", "reason")
    fields = ("number", "reason")

    def save_model(self, request: HttpRequest, obj: DoNotCallNumber, form: ModelForm, change: bool) -> None:
        if not change:
            obj.added_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """The secret is made on creation and shown once; only its SHA-256 is kept."""

    list_display = ("name", "prefix", "calls_per_minute", "is_active", "created_by", "created_at", "last_used_at")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at")

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return ["name", "calls_per_minute"]
        return ["name", "prefix", "calls_per_minute", "is_active", "created_by", "created_at", "last_used_at"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: ModelForm, change: bool) -> None:
        if not change:
            obj.created_by = request.user
            raw = api.assign_new_secret(obj)
            super().save_model(request, obj, form, change)
            messages.warning(
                request,
                format_html("The token for “{}” is <code>{}</code>. Copy it now: it is not stored and will not "
                            "be shown again.", obj.name, raw),
            )
            return
        super().save_model(request, obj, form, change)
