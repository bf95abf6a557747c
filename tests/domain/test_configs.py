"""Agent config revisions (record, diff, restore), the frozen call snapshot, and number routing."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from calls import services
from calls.models import AgentConfig, AgentConfigRevision, PhoneNumber, Tool

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("editor", password="x-very-long-password", is_staff=True)


@pytest.fixture
def lookup_tool(db) -> Tool:
    return Tool.objects.create(
        name="lookup_order",
        description="Look up an order by number.",
        url="https://api.example.com/orders",
        parameters={"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]},
        timeout_s=3.0,
        secret_header_name="X-Api-Key",
    )


# --- revisions ---------------------------------------------------------------------------------------


def test_first_revision_records_every_field(config):
    (revision,) = config.revisions.all()

    assert revision.number == 1
    assert revision.data["instructions"] == "You answer the phone for Example Dental."
    assert revision.data["tools"] == []
    assert set(revision.changed_fields) == set(services.REVISION_FIELDS) | {"tools"}


def test_a_save_without_changes_records_nothing(config):
    assert services.record_revision(config) is None
    assert config.revisions.count() == 1


def test_each_change_is_a_numbered_revision_with_author_and_changed_fields(config, staff, lookup_tool):
    config.instructions = "You answer the phone for Example Dental. Be brief."
    config.voice = "cedar"
    config.save()
    second = services.record_revision(config, author=staff, comment="shorter answers")
    config.tools.add(lookup_tool)
    third = services.record_revision(config, author=AnonymousUser())

    assert (second.number, second.author, second.comment) == (2, staff, "shorter answers")
    assert second.changed_fields == ["instructions", "voice"]
    assert (third.number, third.author, third.changed_fields) == (3, None, ["tools"])
    assert third.data["tools"] == ["lookup_order"]


def test_revision_diff_lists_old_and_new_values(config):
    old = config.revisions.get().data
    new = {**old, "voice": "cedar", "speed": 1.2}

    # Sorted: PostgreSQL's jsonb does not keep the key order the revision was written in.
    assert sorted(services.revision_diff(old, new)) == [("speed", 1.0, 1.2), ("voice", "marin", "cedar")]
    assert services.revision_diff(old, old) == []
    assert ("name", None, "Front desk") in services.revision_diff(None, old)


def test_restore_brings_back_fields_and_tools_as_a_new_revision(config, staff, lookup_tool):
    original = config.revisions.get()
    config.instructions = "Something else entirely."
    config.greeting = ""
    config.save()
    config.tools.add(lookup_tool)
    services.record_revision(config, author=staff)

    restored = services.restore_revision(original, author=staff)

    restored.refresh_from_db()
    assert restored.instructions == "You answer the phone for Example Dental."
    assert restored.greeting == "Hello!"
    assert list(restored.tools.all()) == []
    latest = restored.revisions.order_by("-number").first()
    assert latest.number == 3
    assert latest.comment == "Restored revision 1"
    assert latest.data == original.data


def test_restoring_a_default_revision_takes_the_default_from_the_other_config(config):
    other = AgentConfig.objects.create(name="Night line", instructions="x", is_default=False)
    services.record_revision(other)
    AgentConfig.objects.filter(pk=config.pk).update(is_default=False)
    AgentConfig.objects.filter(pk=other.pk).update(is_default=True)

    services.restore_revision(config.revisions.get())

    assert list(AgentConfig.objects.filter(is_default=True)) == [config]


def test_revisions_are_unique_per_config_and_number(config):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        AgentConfigRevision.objects.create(config=config, number=1, data={})


# --- snapshot ----------------------------------------------------------------------------------------


def test_snapshot_with_server_vad_and_defaults(config):
    snapshot = services.config_snapshot(config)

    assert snapshot["config_id"] == config.pk
    assert snapshot["name"] == "Front desk"
    assert snapshot["revision"] == 1
    assert snapshot["model"] == "gpt-realtime-2.1"
    assert snapshot["voice"] == "marin"
    assert snapshot["greeting"] == "Hello!"
    assert snapshot["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "interrupt_response": True,
        "create_response": True,
    }
    assert snapshot["noise_reduction"] is None
    assert snapshot["transcription_model"] == "gpt-4o-mini-transcribe"
    assert snapshot["max_output_tokens"] == "inf"
    assert snapshot["max_call_seconds"] == 55 * 60
    assert snapshot["transfer_number"] is None
    assert snapshot["tools"] == []
    assert snapshot["engine"] == "realtime"


def test_snapshot_carries_the_engine_and_the_idle_timeout_and_calls_record_their_engine(config):
    config.engine, config.model, config.idle_timeout_ms = AgentConfig.Engine.LIVE, "gpt-live-1.1", 9000
    config.save()
    snapshot = services.config_snapshot(config)
    assert (snapshot["engine"], snapshot["model"]) == ("live", "gpt-live-1.1")
    assert snapshot["turn_detection"]["idle_timeout_ms"] == 9000
    assert snapshot["backend_model"] is None and snapshot["backend_instructions"] is None  # the codec's defaults
    config.backend_model, config.backend_instructions = "gpt-5.4", "Look orders up carefully."
    snapshot = services.config_snapshot(config)
    assert (snapshot["backend_model"], snapshot["backend_instructions"]) == ("gpt-5.4", "Look orders up carefully.")
    call = services.start_call("CA" + "e" * 32, "AC1", "+14155550100", "+15005550006", config)
    assert call.engine == "live" and call.config_snapshot["engine"] == "live"
    assert services.start_call("CA" + "f" * 32, "AC1", "+1", "+2", None).engine == ""


def test_a_model_of_the_other_engine_is_refused_and_an_empty_one_is_the_engines_default(config):
    from django.core.exceptions import ValidationError

    config.engine = AgentConfig.Engine.LIVE
    with pytest.raises(ValidationError, match="not a GPT-Live"):
        config.full_clean()
    config.model = ""
    config.clean()
    assert config.model == "gpt-live-1.1"


def test_snapshot_with_semantic_vad_and_limits(config):
    config.turn_detection = AgentConfig.TurnDetection.SEMANTIC_VAD
    config.eagerness = AgentConfig.Eagerness.LOW
    config.interrupt_response = False
    config.transcription_enabled = False
    config.noise_reduction = AgentConfig.NoiseReduction.FAR_FIELD
    config.max_output_tokens = 400
    config.max_call_minutes = 10

    snapshot = services.config_snapshot(config)

    assert snapshot["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "interrupt_response": False,
        "create_response": True,
    }
    assert snapshot["transcription_model"] is None
    assert snapshot["noise_reduction"] == "far_field"
    assert snapshot["max_output_tokens"] == 400
    assert snapshot["max_call_seconds"] == 600


def test_snapshot_tools(config, lookup_tool):
    builtins = services.ensure_builtin_tools()
    retired = Tool.objects.create(
        name="retired", description="x", url="https://x.example.com", is_active=False
    )
    config.tools.set([*builtins, lookup_tool, retired])

    names = [t["name"] for t in services.config_snapshot(config)["tools"]]
    assert names == ["end_call", "lookup_order"]  # transfer_call needs a number; inactive tools are left out

    config.transfer_number = "+14155550142"
    tools = {t["name"]: t for t in services.config_snapshot(config)["tools"]}
    assert sorted(tools) == ["end_call", "lookup_order", "transfer_call"]
    assert tools["lookup_order"] == {
        "kind": "http",
        "name": "lookup_order",
        "description": "Look up an order by number.",
        "parameters": lookup_tool.parameters,
        "url": "https://api.example.com/orders",
        "timeout_s": 3.0,
        "secret_header_name": "X-Api-Key",
        "tool_id": lookup_tool.pk,
    }
    assert tools["end_call"]["kind"] == "builtin" and "url" not in tools["end_call"]


def test_ensure_builtin_tools_is_idempotent(db):
    services.ensure_builtin_tools()
    services.ensure_builtin_tools()
    assert sorted(Tool.objects.values_list("name", "kind")) == [
        ("end_call", "builtin"),
        ("transfer_call", "builtin"),
    ]


def test_call_keeps_the_snapshot_after_the_config_changes(config):
    call = services.start_call("CA" + "7" * 32, "", "+14155550100", "+14155550199", config)
    config.instructions = "Changed after the call."
    config.save()

    call.refresh_from_db()
    assert call.config_snapshot["instructions"] == "You answer the phone for Example Dental."


# --- routing -----------------------------------------------------------------------------------------


@pytest.fixture
def sales(db) -> AgentConfig:
    return AgentConfig.objects.create(name="Sales", instructions="Sell.")


def test_a_routed_number_gets_its_config(config, sales):
    PhoneNumber.objects.create(number="+14155550101", agent_config=sales)
    assert services.resolve_config("+14155550101") == sales


def test_an_unrouted_number_gets_the_default(config, sales):
    PhoneNumber.objects.create(number="+14155550101", agent_config=sales)
    assert services.resolve_config("+14155550999") == config
    assert services.resolve_config("") == config


def test_inactive_routes_and_configs_fall_back_to_the_default(config, sales):
    PhoneNumber.objects.create(number="+14155550101", agent_config=sales, is_active=False)
    closed = AgentConfig.objects.create(name="Closed", instructions="x", is_active=False)
    PhoneNumber.objects.create(number="+14155550102", agent_config=closed)

    assert services.resolve_config("+14155550101") == config
    assert services.resolve_config("+14155550102") == config


def test_no_usable_default_means_no_config(config, sales):
    assert services.resolve_config("+14155550999") == config
    config.is_active = False
    config.save()
    assert services.resolve_config("+14155550999") is None
    AgentConfig.objects.update(is_default=False)
    assert services.resolve_config("+14155550999") is None


def test_only_one_default_config(config):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        AgentConfig.objects.create(name="Second default", instructions="x", is_default=True)
