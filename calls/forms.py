"""Forms for the admin and the dashboard, with error messages staff can act on."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.forms.fields import InvalidJSONInput
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from calls.models import MODELS, AgentConfig, Call, DoNotCallNumber, PhoneNumber, Tool, default_model
from calls.services import REVISION_FIELDS
from calls.validators import empty_parameters_schema

# Separators people paste from address books: "+1 (415) 555-0123" means +14155550123.
_PHONE_SEPARATORS = re.compile(r"[\s\-().\u00a0]")


def normalize_phone(value: str) -> str:
    """Drop separators; never guess a country code, so "4155550123" still fails E.164 validation."""
    return _PHONE_SEPARATORS.sub("", value or "")


def unix_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def allow_phone_separators(field: forms.Field) -> None:
    """Let a phone field accept "+1 (415) 555-0123": the model's length limit applies after normalising."""
    field.max_length = 32
    field.validators = [v for v in field.validators if not isinstance(v, MaxLengthValidator)]
    field.widget.attrs["maxlength"] = "32"


class PrettyJSONField(forms.JSONField):
    """A JSON textarea that shows indented JSON and says where a syntax error is."""

    widget = forms.Textarea(attrs={"rows": 14, "class": "vLargeTextField vo-code", "spellcheck": "false"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value  # show exactly what was typed, so the mistake can be fixed in place
        return json.dumps(value, indent=2, ensure_ascii=False)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value.strip() and not isinstance(value, InvalidJSONInput):
            try:
                json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    "This is not valid JSON: %(msg)s (line %(line)s, column %(col)s).",
                    code="invalid",
                    params={"msg": exc.msg, "line": exc.lineno, "col": exc.colno},
                ) from None
        return super().to_python(value)


class ModelNameInput(forms.TextInput):
    """A text input offering the known models of both engines (a <datalist>), free text allowed for new names."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"list": "vo-models", "class": "vTextField", "autocomplete": "off", **(attrs or {})})

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> str:
        options = "".join(
            format_html('<option value="{}" data-engine="{}">{}</option>', model, engine, label)
            for engine, label in AgentConfig.Engine.choices
            for model in MODELS[engine]
        )
        return mark_safe(  # noqa: S308 - the input is rendered by Django, every option value is escaped above
            super().render(name, value, attrs, renderer) + f'<datalist id="vo-models">{options}</datalist>'
        )


class AgentConfigAdminForm(forms.ModelForm):
    change_note = forms.CharField(
        max_length=200,
        required=False,
        label="Change note",
        help_text="Optional: what you changed and why. Kept with the revision.",
    )

    class Meta:
        model = AgentConfig
        fields = [*REVISION_FIELDS, "tools"]
        labels = {
            "vad_threshold": "VAD threshold",
            "vad_prefix_padding_ms": "Prefix padding (ms)",
            "vad_silence_duration_ms": "Silence duration (ms)",
            "max_call_minutes": "Max call length (minutes)",
            "is_default": "Default config",
            "is_active": "Active",
        }
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 18, "class": "vLargeTextField vo-prompt"}),
            "greeting": forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"}),
            "model": ModelNameInput(),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allow_phone_separators(self.fields["transfer_number"])
        self.fields["model"].required = False  # empty: the engine's default
        engine = self.initial.get("engine")
        if not self.instance.pk and engine in MODELS and "model" not in (kwargs.get("initial") or {}):
            self.initial["model"] = default_model(engine)  # e.g. ?engine=live offers gpt-live-1.1

    def clean_model(self) -> str:
        return self.cleaned_data.get("model") or default_model(self.cleaned_data.get("engine") or "realtime")

    def clean_transfer_number(self) -> str:
        return normalize_phone(self.cleaned_data.get("transfer_number", ""))

    # Browsers send a textarea's line breaks as CRLF; the model gets the prompt as written, with \n.
    def clean_instructions(self) -> str:
        return unix_newlines(self.cleaned_data.get("instructions", ""))

    def clean_greeting(self) -> str:
        return unix_newlines(self.cleaned_data.get("greeting", ""))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("is_default") and data.get("is_active") is False:
            self.add_error("is_active", "The default config must be active: calls to numbers without a route use it.")
        if data.get("machine_detection") == AgentConfig.MachineDetection.VOICEMAIL and not (
            data.get("voicemail_message") or ""
        ).strip():
            self.add_error("voicemail_message", "Write the message to leave, or choose to hang up on machines.")
        start, end = data.get("calling_hours_start"), data.get("calling_hours_end")
        if start is not None and start == end:
            self.add_error("calling_hours_end", "Start and end are the same hour: use 0 and 24 to allow any time.")
        return data

    def _get_validation_exclusions(self) -> set[str]:
        # Ticking "default" hands the flag over from the previous default on save
        # (AgentConfigAdmin.save_model), so the one-default constraint must not refuse the form here.
        exclusions = super()._get_validation_exclusions()
        exclusions.add("is_default")
        return exclusions


class PhoneNumberAdminForm(forms.ModelForm):
    class Meta:
        model = PhoneNumber
        fields = ["number", "label", "agent_config", "is_active", "twilio_sid"]
        help_texts = {
            "number": "E.164: a + then country code and number, e.g. +14155550123. Spaces and dashes are removed."
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allow_phone_separators(self.fields["number"])

    def clean_number(self) -> str:
        return normalize_phone(self.cleaned_data.get("number", ""))


class ToolAdminForm(forms.ModelForm):
    parameters = PrettyJSONField(
        label="Parameters (JSON Schema)",
        initial=empty_parameters_schema,  # a declared field does not get the model's default
        help_text='An object schema for the arguments, e.g. {"type": "object", "properties": {"order_id": '
        '{"type": "string"}}, "required": ["order_id"]}.',
    )
    # https is assumed when the scheme is left out; an explicit http:// is refused by the model's validator.
    url = forms.URLField(
        assume_scheme="https",
        required=False,
        label="URL",
        max_length=200,
        widget=forms.URLInput(attrs={"class": "vURLField vo-wide", "placeholder": "https://api.example.com/…"}),
        help_text="Where the bridge POSTs the arguments as JSON. https only.",
    )

    class Meta:
        model = Tool
        fields = [
            "name",
            "kind",
            "description",
            "parameters",
            "url",
            "timeout_s",
            "secret_header_name",
            "is_active",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"})}
        labels = {"timeout_s": "Timeout (seconds)", "is_active": "Active"}
        help_texts = {
            # The model's text names TOOL_SECRET_<NAME>, which the admin would render as a tag.
            "secret_header_name": "An HTTP header name, e.g. X-Api-Key. Empty when the endpoint needs no secret.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.kind == Tool.Kind.BUILTIN:
            self.fields.pop("url", None)  # declared fields survive the admin's field list: drop it here

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.instance.pk and data.get("kind") == Tool.Kind.BUILTIN:
            self.add_error("kind", "Built-in tools come with voiceops (end_call, transfer_call); add HTTP tools here.")
        return data


class CallFilterForm(forms.Form):
    """The dashboard's call history filters (all optional, submitted by GET)."""

    q = forms.CharField(
        required=False,
        label="Search",
        widget=forms.TextInput(attrs={"placeholder": "Call SID, number or words said", "type": "search"}),
    )
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Call.Status.choices])
    config = forms.ModelChoiceField(required=False, queryset=AgentConfig.objects.all(), empty_label="Any config")
    to = forms.CharField(required=False, label="To number", widget=forms.TextInput(attrs={"placeholder": "+1…"}))
    end_reason = forms.ChoiceField(
        required=False, label="End reason", choices=[("", "Any end reason"), *Call.EndReason.choices]
    )
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="Until", widget=forms.DateInput(attrs={"type": "date"}))

    def clean_to(self) -> str:
        return normalize_phone(self.cleaned_data.get("to", ""))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "“Until” is before “From”.")
        return data


class PlaceCallForm(forms.Form):
    """The dashboard's outbound call: a number and the config whose agent calls it."""

    to = forms.CharField(
        max_length=32, label="Number to call",
        widget=forms.TextInput(attrs={"placeholder": "+14155550123", "autocomplete": "off", "inputmode": "tel"}),
        help_text="E.164: a + then country code and number. Spaces and dashes are removed.",
    )
    config = forms.ModelChoiceField(
        queryset=AgentConfig.objects.filter(is_active=True), label="Agent config", empty_label=None,
    )


class DoNotCallNumberAdminForm(forms.ModelForm):
    class Meta:
        model = DoNotCallNumber
        fields = ["number", "reason"]
        help_texts = {"number": PhoneNumberAdminForm.Meta.help_texts["number"]}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allow_phone_separators(self.fields["number"])

    def clean_number(self) -> str:
        return normalize_phone(self.cleaned_data.get("number", ""))
