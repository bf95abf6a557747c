"""Agent configs in the admin: pages, revisions on every save, the default hand-over, bad input."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django.utils.html import escape

from calls import services
from calls.models import AgentConfig, AgentConfigRevision, PhoneNumber, Tool
from tests.web.helpers import config_post_data, new_config_data

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:calls_agentconfig_add")


def change_url(config: AgentConfig) -> str:
    return reverse("admin:calls_agentconfig_change", args=[config.pk])


def test_changelist_shows_voice_model_default_and_number_count(admin_client, front_desk):
    PhoneNumber.objects.create(number="+15550001111", agent_config=front_desk)
    PhoneNumber.objects.create(number="+15550002222", agent_config=front_desk)
    response = admin_client.get(reverse("admin:calls_agentconfig_changelist"))
    assert response.status_code == 200
    row = response.context["cl"].result_list[0]
    assert row.number_count == 2
    html = response.content.decode()
    assert "Front desk" in html and "marin" in html and "gpt-realtime" in html
    assert "column-number_count" in html and "column-last_edited" in html


def test_change_page_has_fieldsets_preview_and_revision_history(admin_client, front_desk):
    response = admin_client.get(change_url(front_desk))
    assert response.status_code == 200
    html = response.content.decode()
    for heading in (
        "Prompt",
        "Engine and voice",
        "Turn taking",
        "Transcription",
        "Limits",
        "Tools",
        "Routing",
        "Cost",
        "Session preview",
        "Revisions",
    ):
        assert f">{heading}<" in html, heading
    assert "selectfilter" in html.lower()  # filter_horizontal widget for tools
    # The preview is the session the bridge builds from this config.
    assert "Acme Dental" in html and "end_call" in html
    assert reverse("admin:calls_agentconfigrevision_change", args=[front_desk.revisions.get().pk]) in html


def test_change_page_estimates_the_cost_per_minute_for_the_engine_and_model(admin_client, front_desk):
    front_desk.transcription_enabled = False
    front_desk.save()
    html = admin_client.get(change_url(front_desk)).content.decode()
    # gpt-realtime-2.1, a 3-minute call with a 500-token prompt: $0.20192 a minute (tests/domain/test_pricing.py).
    assert "≈ $0.2019 a minute</strong> OpenAI (OpenAI Realtime (token billed) gpt-realtime-2.1)" in html
    assert "$0.0125 Twilio" in html  # $0.0085 inbound + $0.004 Media Streams

    front_desk.model = "gpt-realtime-2.1-mini"
    front_desk.save()
    assert "≈ $0.0618 a minute" in admin_client.get(change_url(front_desk)).content.decode()

    front_desk.engine, front_desk.model = "live", "gpt-live-1.1"
    front_desk.save()
    assert "≈ $0.0505 a minute</strong> OpenAI (GPT-Live" in admin_client.get(change_url(front_desk)).content.decode()

    front_desk.engine, front_desk.model = "realtime", "gpt-9-realtime"
    front_desk.save()
    assert "No estimate: no price for Realtime model" in admin_client.get(change_url(front_desk)).content.decode()


def test_preview_shows_what_the_bridge_sends(admin_client, front_desk):
    from calls.admin import session_preview_payload
    from calls.services import config_snapshot

    payload, note = session_preview_payload(front_desk)
    try:
        from bridge.realtime_events import session_update
    except ImportError:  # before the bridge's builder exists the preview is the snapshot it will read
        assert payload == config_snapshot(front_desk) and "not installed" in note
    else:
        assert payload == session_update(config_snapshot(front_desk))
        assert payload["type"] == "session.update"
    response = admin_client.get(change_url(front_desk))
    pretty = json.dumps(payload, indent=2, ensure_ascii=False)
    assert escape(pretty) in response.content.decode()


def test_preview_survives_a_broken_session_builder(admin_client, front_desk, monkeypatch):
    from bridge import realtime_events

    def session_update(snapshot):
        raise RuntimeError("boom")

    monkeypatch.setattr(realtime_events, "session_update", session_update)
    response = admin_client.get(change_url(front_desk))
    assert response.status_code == 200
    assert "Building the session event failed" in response.content.decode()


def test_models_are_offered_per_engine_and_new_names_may_be_typed(admin_client):
    html = admin_client.get(ADD_URL).content.decode()
    for model in ("gpt-realtime-2.1", "gpt-realtime-2.1-mini", "gpt-realtime-2", "gpt-realtime-1.5", "gpt-realtime",
                  "gpt-live-1.1"):
        assert f'<option value="{model}"' in html, model
    assert 'list="vo-models"' in html and 'value="gpt-realtime-2.1"' in html  # the default, editable text
    live_form = admin_client.get(ADD_URL + "?engine=live").context["adminform"].form
    assert live_form.initial["model"] == "gpt-live-1.1"
    response = admin_client.post(ADD_URL, new_config_data("Next gen", model="gpt-realtime-2.2-preview"))
    assert response.status_code == 302
    assert AgentConfig.objects.get(name="Next gen").model == "gpt-realtime-2.2-preview"


def test_an_empty_model_is_the_engines_default_and_a_model_of_the_other_engine_is_refused(admin_client):
    response = admin_client.post(ADD_URL, new_config_data("Live desk", engine="live", model="",
                                                          backend_model="gpt-5.4"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    live_desk = AgentConfig.objects.get(name="Live desk")
    assert live_desk.model == "gpt-live-1.1"
    # The session preview is the session.start the Live engine sends, with its backend.
    html = admin_client.get(change_url(live_desk)).content.decode()
    assert "session.start" in html and "GPT-Live backend" in html and "gpt-5.4" in html
    response = admin_client.post(ADD_URL, new_config_data("Mixed", engine="live", model="gpt-realtime-2.1"))
    assert response.status_code == 200
    assert "is not a GPT-Live (billed per minute) model" in str(response.context["adminform"].form.errors["model"])


def test_idle_timeout_reaches_the_session_and_the_preview_and_needs_server_vad(admin_client, front_desk):
    from calls.admin import session_preview_payload

    response = admin_client.post(change_url(front_desk), config_post_data(front_desk, idle_timeout_ms="8000",
                                                                           noise_reduction="far_field"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    front_desk.refresh_from_db()
    payload, _ = session_preview_payload(front_desk)
    audio_input = payload["session"]["audio"]["input"]
    assert audio_input["turn_detection"]["idle_timeout_ms"] == 8000
    assert audio_input["noise_reduction"] == {"type": "far_field"}
    assert "idle_timeout_ms" in admin_client.get(change_url(front_desk)).content.decode()
    response = admin_client.post(change_url(front_desk), config_post_data(
        front_desk, turn_detection="semantic_vad", eagerness="high", idle_timeout_ms="8000"))
    assert response.status_code == 200
    assert "server VAD only" in str(response.context["adminform"].form.errors["idle_timeout_ms"])
    response = admin_client.post(change_url(front_desk), config_post_data(
        front_desk, turn_detection="semantic_vad", eagerness="high", idle_timeout_ms=""))
    assert response.status_code == 302
    front_desk.refresh_from_db()
    turn = session_preview_payload(front_desk)[0]["session"]["audio"]["input"]["turn_detection"]
    assert turn == {"type": "semantic_vad", "eagerness": "high", "interrupt_response": True, "create_response": True}


def test_calls_last_at_most_what_a_release_keeps(admin_client, front_desk):
    response = admin_client.post(change_url(front_desk), config_post_data(front_desk, max_call_minutes="58"))
    assert response.status_code == 302
    response = admin_client.post(change_url(front_desk), config_post_data(front_desk, max_call_minutes="59"))
    assert response.status_code == 200 and "max_call_minutes" in response.context["adminform"].form.errors


def test_changelist_says_who_edited_last(admin_client, front_desk):
    admin_client.post(change_url(front_desk), config_post_data(front_desk, greeting="Hi there"))
    row = admin_client.get(reverse("admin:calls_agentconfig_changelist")).context["cl"].result_list[0]
    assert row.last_editor == "admin"


def test_add_records_the_first_revision_with_author(admin_client, admin_user):
    response = admin_client.post(ADD_URL, new_config_data("Sales", change_note="first draft"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    config = AgentConfig.objects.get(name="Sales")
    revision = config.revisions.get()
    assert (revision.number, revision.author, revision.comment) == (1, admin_user, "first draft")
    assert revision.data["instructions"] == "You answer the phone for Acme."


def test_each_change_records_a_revision_with_changed_fields(admin_client, front_desk):
    data = config_post_data(front_desk, instructions="You are the front desk.\nBe warm.", voice="cedar")
    response = admin_client.post(change_url(front_desk), data)
    assert response.status_code == 302
    latest = front_desk.revisions.order_by("-number").first()
    assert latest.number == 2
    assert latest.changed_fields == ["instructions", "voice"]


def test_saving_without_changes_adds_no_revision(admin_client, front_desk):
    admin_client.post(change_url(front_desk), config_post_data(front_desk))
    assert front_desk.revisions.count() == 1


def test_a_change_of_tools_alone_is_a_revision(admin_client, front_desk, http_tool):
    tools = [str(t.pk) for t in Tool.objects.filter(name__in=["end_call", "lookup_order"])]
    response = admin_client.post(change_url(front_desk), config_post_data(front_desk, tools=tools))
    assert response.status_code == 302
    latest = front_desk.revisions.order_by("-number").first()
    assert latest.changed_fields == ["tools"]
    assert latest.data["tools"] == ["end_call", "lookup_order"]


def test_making_a_config_default_undefaults_the_previous_one(admin_client, front_desk):
    response = admin_client.post(ADD_URL, new_config_data("After hours", is_default=True), follow=True)
    assert response.status_code == 200
    new = AgentConfig.objects.get(name="After hours")
    front_desk.refresh_from_db()
    assert new.is_default and not front_desk.is_default
    assert AgentConfig.objects.filter(is_default=True).count() == 1
    # The old default's history says why it changed.
    assert front_desk.revisions.order_by("-number").first().comment == "Default moved to After hours"
    assert "no longer the default" in response.content.decode()


def test_default_config_must_be_active(admin_client, front_desk):
    response = admin_client.post(change_url(front_desk), config_post_data(front_desk, is_active=False))
    assert response.status_code == 200
    assert "The default config must be active" in response.content.decode()
    front_desk.refresh_from_db()
    assert front_desk.is_active and front_desk.revisions.count() == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("voice", "nova", "Select a valid choice. nova is not one of the available choices."),
        ("transfer_number", "415-555-0123", "is not an E.164 number"),
        ("model", "gpt-4o", "is not an OpenAI voice model"),
        ("speed", "3", "Ensure this value is less than or equal to 1.5."),
        ("max_call_minutes", "300", "Ensure this value is less than or equal to 58."),
    ],
)
def test_bad_input_is_refused_and_nothing_is_saved(admin_client, front_desk, field, value, message):
    before = AgentConfigRevision.objects.count()
    response = admin_client.post(ADD_URL, new_config_data("Broken", **{field: value}))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not AgentConfig.objects.filter(name="Broken").exists()
    assert AgentConfigRevision.objects.count() == before


def test_bad_edit_leaves_config_and_history_unchanged(admin_client, front_desk):
    data = config_post_data(front_desk, instructions="Changed", voice="nova")
    response = admin_client.post(change_url(front_desk), data)
    assert response.status_code == 200
    front_desk.refresh_from_db()
    assert front_desk.instructions.startswith("You are the front desk of Acme Dental")
    assert front_desk.revisions.count() == 1


def test_transfer_number_with_spaces_is_normalised(admin_client, front_desk):
    tools = [str(pk) for pk in front_desk.tools.values_list("pk", flat=True)]
    data = config_post_data(front_desk, transfer_number="+1 (415) 555-0199", tools=tools)
    assert admin_client.post(change_url(front_desk), data).status_code == 302
    front_desk.refresh_from_db()
    assert front_desk.transfer_number == "+14155550199"


def test_what_a_failed_transfer_does_is_chosen_in_routing_and_frozen_in_the_calls_snapshot(admin_client, front_desk):
    assert front_desk.on_failed_transfer == AgentConfig.FailedTransfer.RETURN_TO_AGENT  # the default
    html = admin_client.get(change_url(front_desk)).content.decode()
    assert 'name="on_failed_transfer"' in html and "Bring the caller back to the agent" in html
    tools = [str(pk) for pk in front_desk.tools.values_list("pk", flat=True)]
    data = config_post_data(front_desk, transfer_number="+14155550199", tools=tools,
                            on_failed_transfer=AgentConfig.FailedTransfer.HANG_UP)
    assert admin_client.post(change_url(front_desk), data).status_code == 302
    front_desk.refresh_from_db()
    assert front_desk.on_failed_transfer == AgentConfig.FailedTransfer.HANG_UP
    assert "on_failed_transfer" in front_desk.revisions.order_by("-number").first().changed_fields
    assert services.config_snapshot(front_desk)["on_failed_transfer"] == "hang_up"


def test_transfer_tool_without_number_warns(admin_client, front_desk):
    response = admin_client.post(change_url(front_desk), config_post_data(front_desk, greeting="Hi!"), follow=True)
    assert "The transfer_call tool is enabled but there is no transfer number" in response.content.decode()


def test_prompt_editor_can_edit_a_config(client, editor, front_desk):
    client.force_login(editor)
    response = client.post(change_url(front_desk), config_post_data(front_desk, greeting="Hello from editor"))
    assert response.status_code == 302
    latest = front_desk.revisions.order_by("-number").first()
    assert latest.author == editor and latest.data["greeting"] == "Hello from editor"


def test_prompt_editor_cannot_delete_a_config_or_edit_numbers(client, editor, front_desk):
    client.force_login(editor)
    assert client.get(reverse("admin:calls_agentconfig_delete", args=[front_desk.pk])).status_code == 403
    assert client.get(reverse("admin:calls_phonenumber_add")).status_code == 403


def test_non_staff_is_sent_to_login(client, django_user_model, front_desk):
    user = django_user_model.objects.create_user("caller", password="pw-123456789")
    client.force_login(user)
    response = client.get(change_url(front_desk))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
