"""The domain: agent configs and their revisions, tools, number routing, calls and their events."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models, transaction
from django.db.models import Q
from django.db.models.signals import post_delete
from django.dispatch import receiver

from calls import validators

VOICES = ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"]
# The models admin offers per engine, the default first; any other name of the right engine may be typed in.
MODELS = {
    "realtime": ["gpt-realtime-2.1", "gpt-realtime-2.1-mini", "gpt-realtime-2", "gpt-realtime-1.5", "gpt-realtime"],
    "live": ["gpt-live-1.1", "gpt-live-1"],
}
# A release replaces bridge tasks by ALB deregistration, which keeps a task's calls for at most 3600 s (the ALB's
# maximum delay, deploy/cdk/tests/test_drain_model.py): a longer call would be cut by a release. Within that, a
# call that outlasts one Realtime session (60 min, less set-up) is handed over to a fresh session.
MAX_CALL_MINUTES = 58
BUILTIN_TOOLS = ("end_call", "transfer_call")


class AgentConfig(models.Model):
    class Engine(models.TextChoices):
        REALTIME = "realtime", "OpenAI Realtime (token billed)"
        LIVE = "live", "GPT-Live (billed per minute)"

    class TurnDetection(models.TextChoices):
        SERVER_VAD = "server_vad", "Server VAD (silence based)"
        SEMANTIC_VAD = "semantic_vad", "Semantic VAD (meaning based)"

    class Eagerness(models.TextChoices):
        AUTO = "auto", "Auto"
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    class NoiseReduction(models.TextChoices):
        OFF = "", "Off"
        NEAR_FIELD = "near_field", "Near field (handset)"
        FAR_FIELD = "far_field", "Far field (speakerphone)"

    class TransferMode(models.TextChoices):
        WARM = "warm", "Warm: whisper a summary to the person answering first"
        COLD = "cold", "Cold: connect the caller straight away"

    class FailedTransfer(models.TextChoices):
        RETURN_TO_AGENT = "return", "Bring the caller back to the agent"
        HANG_UP = "hang_up", "Say that nobody could take the call, then hang up"

    class MachineDetection(models.TextChoices):
        OFF = "off", "Off: the agent talks to whoever answers"
        HANG_UP = "hang_up", "Hang up on an answering machine"
        VOICEMAIL = "voicemail", "Leave the voicemail message after the beep"

    name = models.CharField(max_length=100, unique=True)
    instructions = models.TextField(help_text="The system prompt: who the agent is and how it behaves.")
    greeting = models.TextField(blank=True, help_text="What the agent says first. Empty: it waits for the caller.")
    voice = models.CharField(max_length=20, choices=[(v, v) for v in VOICES], default="marin")
    engine = models.CharField(max_length=10, choices=Engine.choices, default=Engine.REALTIME)
    model = models.CharField(
        max_length=100, default=MODELS["realtime"][0], validators=[validators.validate_model_name],
        help_text="Realtime: gpt-realtime-2.1 (default), gpt-realtime-2.1-mini (about a third of the price), "
        "gpt-realtime-2, gpt-realtime-1.5, gpt-realtime; GPT-Live: gpt-live-1.1, gpt-live-1. A newer name of the "
        "same engine may be typed in. Empty: the engine's default.",
    )
    backend_model = models.CharField(
        max_length=100, blank=True,
        help_text="GPT-Live: the Responses model that runs the agent's tools (billed apart, by tokens). "
        "Empty: gpt-5.4-mini.",
    )
    backend_instructions = models.TextField(
        blank=True, help_text="GPT-Live: the backend model's prompt. Empty: the agent's instructions.",
    )
    speed = models.FloatField(default=1.0, validators=[MinValueValidator(0.25), MaxValueValidator(1.5)])
    turn_detection = models.CharField(max_length=20, choices=TurnDetection.choices, default=TurnDetection.SERVER_VAD)
    vad_threshold = models.FloatField(
        default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Server VAD: loudness needed to count as speech (higher = less sensitive).",
    )
    vad_prefix_padding_ms = models.PositiveIntegerField(default=300, validators=[MaxValueValidator(2000)])
    vad_silence_duration_ms = models.PositiveIntegerField(
        default=500, validators=[MinValueValidator(100), MaxValueValidator(5000)],
        help_text="Server VAD: silence that ends the caller's turn.",
    )
    idle_timeout_ms = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(5000), MaxValueValidator(120_000)],
        help_text="Server VAD: after this much silence from the caller the agent asks whether they are still "
        "there; after a second one it says goodbye and ends the call. Empty: wait indefinitely.",
    )
    eagerness = models.CharField(max_length=10, choices=Eagerness.choices, default=Eagerness.AUTO)
    interrupt_response = models.BooleanField(default=True, help_text="Let the caller interrupt the agent.")
    noise_reduction = models.CharField(max_length=20, choices=NoiseReduction.choices, blank=True, default="")
    transcription_enabled = models.BooleanField(default=True, help_text="Transcribe what the caller says.")
    transcription_model = models.CharField(max_length=100, default="gpt-4o-mini-transcribe")
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(4096)],
        help_text="Per response; empty = no limit.",
    )
    max_call_minutes = models.PositiveIntegerField(
        default=55, validators=[MinValueValidator(1), MaxValueValidator(MAX_CALL_MINUTES)],
        help_text="The call ends politely at this point (at most 58: a release keeps a bridge task's calls for up "
        "to 60 minutes). A Realtime session that reaches its limit first hands over to a fresh one unheard.",
    )
    tools = models.ManyToManyField("Tool", blank=True, related_name="agent_configs")
    transfer_number = models.CharField(
        max_length=16, blank=True, validators=[validators.validate_e164],
        help_text="Where transfer_call sends the caller (E.164).",
    )
    transfer_mode = models.CharField(
        max_length=10, choices=TransferMode.choices, default=TransferMode.WARM,
        help_text="Warm: the person answering hears a short summary before the caller is connected.",
    )
    on_failed_transfer = models.CharField(
        max_length=10, choices=FailedTransfer.choices, default=FailedTransfer.RETURN_TO_AGENT,
        help_text="When nobody takes a transfer (no answer, busy, failed): the agent takes the caller back, tells "
        "them so and offers something else (e.g. to take a message), or the caller hears so and the call ends.",
    )
    record_calls = models.BooleanField(
        default=False, help_text="Keep a stereo WAV of each call (left: caller, right: agent).",
    )
    consent_message = models.TextField(
        blank=True, max_length=500,
        help_text="Said word for word before the agent starts (e.g. \"This call is recorded.\"). Empty: nothing.",
    )
    dtmf_actions = models.JSONField(
        default=dict, blank=True, validators=[validators.validate_dtmf_actions],
        help_text='Keypad menu: a key to an action, e.g. {"0": "transfer", "9": "repeat", "#": "end"}. Actions: '
        + validators.KEYPAD_ACTIONS_HELP + " Keys not listed tell the model which key was pressed.",
    )
    # Outbound calls (calls.outbound): answering-machine detection and the guards on who is called when.
    machine_detection = models.CharField(
        max_length=10, choices=MachineDetection.choices, default=MachineDetection.OFF,
        help_text="Outbound calls: what happens when an answering machine picks up (Twilio's async AMD).",
    )
    voicemail_message = models.TextField(
        blank=True, help_text="Outbound calls: what is said after the beep when leaving a voicemail.",
    )
    calling_hours_start = models.PositiveSmallIntegerField(
        default=8, validators=[MaxValueValidator(23)], help_text="Outbound calls start at this hour (0-23).",
    )
    calling_hours_end = models.PositiveSmallIntegerField(
        default=21, validators=[MinValueValidator(1), MaxValueValidator(24)],
        help_text="…and stop at this hour (1-24, exclusive): 8 to 21 allows 08:00-20:59.",
    )
    calling_time_zone = models.CharField(
        max_length=64, default="UTC", validators=[validators.validate_time_zone],
        help_text="The time zone of the calling hours (IANA name, e.g. America/New_York).",
    )
    max_concurrent_outbound = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(500)],
        help_text="Outbound calls of this config ringing or talking at the same time, at most.",
    )
    is_active = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False, help_text="Used when the dialled number has no route.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_config"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if not self.model:
            self.model = default_model(self.engine)
        if self.engine in MODELS and self.engine not in self.model:
            raise ValidationError({"model": f"{self.model} is not a {self.get_engine_display()} model "
                                            f"(e.g. {MODELS[self.engine][0]})."})
        if self.idle_timeout_ms and self.turn_detection != self.TurnDetection.SERVER_VAD:
            raise ValidationError({"idle_timeout_ms": "The idle timeout works with server VAD only."})


def default_model(engine: str) -> str:
    return MODELS.get(engine, MODELS["realtime"])[0]


class AgentConfigRevision(models.Model):
    """A frozen copy of a config after each save, to view, compare and restore."""

    config = models.ForeignKey(AgentConfig, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    data = models.JSONField(help_text="The config's editable fields after this save.")
    changed_fields = models.JSONField(default=list)
    comment = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["config", "-number"]
        constraints = [models.UniqueConstraint(fields=["config", "number"], name="unique_revision_number")]

    def __str__(self) -> str:
        return f"{self.config} r{self.number}"


class Tool(models.Model):
    class Kind(models.TextChoices):
        BUILTIN = "builtin", "Built-in (provided by the bridge)"
        HTTP = "http", "HTTP (POSTs the arguments as JSON)"

    name = models.CharField(
        max_length=64, unique=True,
        validators=[RegexValidator(r"^[a-zA-Z0-9_-]{1,64}$", "Letters, digits, _ and - only (max 64).")],
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.HTTP)
    description = models.TextField(help_text="Tells the model when and how to use the tool.")
    parameters = models.JSONField(
        default=validators.empty_parameters_schema, validators=[validators.validate_parameters_schema],
        help_text="JSON Schema (an object schema) for the arguments.",
    )
    url = models.URLField(blank=True, validators=[validators.validate_https_url])
    timeout_s = models.FloatField(default=5.0, validators=[MinValueValidator(0.5), MaxValueValidator(30.0)])
    secret_header_name = models.CharField(
        max_length=100, blank=True,
        validators=[RegexValidator(r"^[A-Za-z0-9-]+$", "An HTTP header name, e.g. X-Api-Key.")],
        help_text="Header that carries the secret from TOOL_SECRET_<NAME> (env or SSM); never stored here.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.kind == self.Kind.HTTP and not self.url:
            raise ValidationError({"url": "An HTTP tool needs an https:// URL."})
        if self.kind == self.Kind.BUILTIN and self.name not in BUILTIN_TOOLS:
            raise ValidationError({"name": f"Built-in tools are {', '.join(BUILTIN_TOOLS)}."})

    @property
    def secret_env_name(self) -> str:
        return "TOOL_SECRET_" + self.name.upper().replace("-", "_")


class PhoneNumber(models.Model):
    number = models.CharField(max_length=16, unique=True, validators=[validators.validate_e164])
    label = models.CharField(max_length=100, blank=True)
    agent_config = models.ForeignKey(AgentConfig, on_delete=models.PROTECT, related_name="phone_numbers")
    is_active = models.BooleanField(default=True)
    twilio_sid = models.CharField(max_length=64, blank=True, help_text="Twilio's PN… id (sync_twilio_numbers).")

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"{self.number} → {self.agent_config}"


class Call(models.Model):
    class Status(models.TextChoices):
        RINGING = "ringing", "Ringing"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        BUSY = "busy", "Busy"
        NO_ANSWER = "no_answer", "No answer"
        CANCELED = "canceled", "Canceled"

    TERMINAL = frozenset({"completed", "failed", "busy", "no_answer", "canceled"})

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class EndReason(models.TextChoices):
        CALLER_HANGUP = "caller_hangup", "Caller hung up"
        AGENT_ENDED = "agent_ended", "Agent ended the call"
        TRANSFERRED = "transferred", "Transferred"
        MAX_DURATION = "max_duration", "Reached the maximum duration"
        UPSTREAM_ERROR = "upstream_error", "OpenAI connection failed"
        NOT_CONFIGURED = "not_configured", "Not configured"
        DRAINED = "drained", "Ended by a bridge shutdown"
        PROTOCOL_ERROR = "protocol_error", "Bad stream input"
        STREAM_LOST = "stream_lost", "Media stream lost"

    class TransferState(models.TextChoices):
        """Where the call's latest transfer stands. The caller is still on the line while DIALING and RETURNING:
        the call is not over (no end reason) until the person hangs up, or the agent's next stream ends."""

        NONE = "", "No transfer"
        DIALING = "dialing", "Ringing the transfer number"
        ANSWERED = "answered", "Answered by a person"
        RETURNING = "returning", "Not answered: reconnecting the caller to the agent"
        RETURNED = "returned", "Not answered: back with the agent"
        UNANSWERED = "unanswered", "Not answered: the call ended"

    twilio_call_sid = models.CharField(max_length=64, unique=True)
    direction = models.CharField(max_length=10, choices=Direction.choices, default=Direction.INBOUND)
    engine = models.CharField(max_length=10, choices=AgentConfig.Engine.choices, blank=True)
    is_test = models.BooleanField(
        default=False, help_text="A test or load call: kept out of the headline figures.",
    )
    account_sid = models.CharField(max_length=64, blank=True)
    stream_sid = models.CharField(max_length=64, blank=True)
    from_number = models.CharField(max_length=32, blank=True)
    to_number = models.CharField(max_length=32, blank=True)
    agent_config = models.ForeignKey(
        AgentConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    config_snapshot = models.JSONField(default=dict, help_text="The config as it was when the call came in.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RINGING, db_index=True)
    twilio_status = models.CharField(max_length=20, blank=True)
    twilio_status_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="The first media stream started.")
    stream_started_at = models.DateTimeField(
        null=True, blank=True, help_text="The latest media stream started (a second one after a failed transfer).",
    )
    stream_count = models.PositiveSmallIntegerField(
        default=0, help_text="Media streams so far: one, plus one each time a failed transfer returns to the agent.",
    )
    agent_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds on the agent's media streams (not the transfers): what the "
        "OpenAI session is billed for.",
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.PositiveIntegerField(null=True, blank=True)
    stream_token_used_at = models.DateTimeField(null=True, blank=True)
    bridge_instance = models.CharField(max_length=64, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    usage = models.JSONField(default=dict, blank=True, help_text="Summed usage from response.done events.")
    cost_usd = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="Estimated OpenAI cost of the call.",
    )
    recording = models.FileField(upload_to="recordings/%Y/%m/", blank=True)
    answered_by = models.CharField(
        max_length=32, blank=True, help_text="Outbound: Twilio's answering-machine verdict (human, machine_…).",
    )
    placed_by = models.CharField(max_length=150, blank=True, help_text="Outbound: who placed the call.")
    transfer_summary = models.TextField(
        blank=True, help_text="Transferred calls: what the person taking the call hears first (warm transfer).",
    )
    transfer_state = models.CharField(max_length=10, choices=TransferState.choices, blank=True, default="")
    transfer_dial_status = models.CharField(
        max_length=20, blank=True, help_text="Twilio's DialCallStatus of the latest transfer (no-answer, busy, …).",
    )

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("place_call", "Can place outbound calls"),
            ("listen_recording", "Can listen to call recordings"),
        ]
        indexes = [models.Index(fields=["to_number", "-created_at"])]

    def __str__(self) -> str:
        return self.twilio_call_sid

    @property
    def is_live(self) -> bool:
        return self.status not in self.TERMINAL


@receiver(post_delete, sender=Call, dispatch_uid="calls.delete_recording")
def _delete_recording(sender: type[Call], instance: Call, **kwargs: object) -> None:
    """A deleted call takes its recording with it (purge_calls, admin), once the deletion is committed."""
    if instance.recording:
        from calls.services import delete_recording_file

        name = instance.recording.name
        transaction.on_commit(lambda: delete_recording_file(name))


class CallEvent(models.Model):
    class Kind(models.TextChoices):
        CALLER = "caller", "Caller said"
        AGENT = "agent", "Agent said"
        TOOL_CALL = "tool_call", "Tool call"
        TOOL_RESULT = "tool_result", "Tool result"
        BARGE_IN = "barge_in", "Caller interrupted"
        DTMF = "dtmf", "Keypad"
        STATUS = "status", "Status"
        ERROR = "error", "Error"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    t_ms = models.PositiveIntegerField(help_text="Milliseconds since the call started.")
    text = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["call", "seq"]
        constraints = [models.UniqueConstraint(fields=["call", "seq"], name="unique_event_seq")]

    def __str__(self) -> str:
        return f"{self.call_id}#{self.seq} {self.kind}"


class DoNotCallNumber(models.Model):
    """A number voiceops never calls (place_call refuses it, whoever asks)."""

    number = models.CharField(max_length=16, unique=True, validators=[validators.validate_e164])
    reason = models.CharField(max_length=200, blank=True)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["number"]
        verbose_name = "do-not-call number"

    def __str__(self) -> str:
        return self.number


class ApiToken(models.Model):
    """A bearer token other systems use to place outbound calls. Only its SHA-256 is stored."""

    name = models.CharField(max_length=100, unique=True, help_text="Which system uses it.")
    prefix = models.CharField(
        max_length=12, editable=False, help_text="The token's first characters, to tell it apart.",
    )
    token_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    calls_per_minute = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(600)],
        help_text="Calls this token may place per minute; more get HTTP 429.",
    )
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
