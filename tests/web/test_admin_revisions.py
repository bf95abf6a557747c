"""Revision history in the admin: read-only list, diff page, restore with confirmation."""

from __future__ import annotations

import pytest
from django.urls import reverse

from calls import services
from calls.admin import build_field_diffs, text_diff_lines
from calls.models import AgentConfig, AgentConfigRevision
from tests.web.helpers import config_post_data

pytestmark = pytest.mark.django_db


def edit(client, config: AgentConfig, **changes) -> AgentConfigRevision:
    url = reverse("admin:calls_agentconfig_change", args=[config.pk])
    response = client.post(url, config_post_data(config, **changes))
    assert response.status_code == 302, response.context["adminform"].form.errors
    return config.revisions.order_by("-number").first()


def detail_url(revision: AgentConfigRevision) -> str:
    return reverse("admin:calls_agentconfigrevision_change", args=[revision.pk])


def restore_url(revision: AgentConfigRevision) -> str:
    return reverse("admin:calls_agentconfigrevision_restore", args=[revision.pk])


def test_revision_list_is_read_only(admin_client, front_desk):
    response = admin_client.get(reverse("admin:calls_agentconfigrevision_changelist"))
    assert response.status_code == 200
    assert "r1" in response.content.decode()
    assert admin_client.get(reverse("admin:calls_agentconfigrevision_add")).status_code == 403
    revision = front_desk.revisions.get()
    assert admin_client.get(reverse("admin:calls_agentconfigrevision_delete", args=[revision.pk])).status_code == 403


def test_revision_page_shows_the_diff_against_the_previous_revision(admin_client, front_desk):
    instructions = front_desk.instructions.replace("Be brief and friendly.", "Be brief, warm and friendly.")
    revision = edit(admin_client, front_desk, instructions=instructions, voice="cedar", change_note="warmer")
    response = admin_client.get(detail_url(revision))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Changes since revision 1" in html and "warmer" in html
    # The changed words are marked inside the changed line; the unchanged lines are context.
    assert "<ins>, warm</ins>" in html or "<ins>warm</ins>" in html
    assert '<span class="vo-old">marin</span>' in html and '<span class="vo-new">cedar</span>' in html
    assert "Never give medical advice." in html
    # The latest revision is what the config is now: nothing to restore.
    assert "This is what the config is now." in html
    assert restore_url(revision) not in html


def test_older_revision_offers_restore(admin_client, front_desk):
    first = front_desk.revisions.get()
    edit(admin_client, front_desk, greeting="Hello!")
    response = admin_client.get(detail_url(first))
    assert "First revision" in response.content.decode()
    assert restore_url(first) in response.content.decode()


def test_restore_asks_for_confirmation_then_restores_as_a_new_revision(admin_client, admin_user, front_desk):
    first = front_desk.revisions.get()
    edit(admin_client, front_desk, greeting="Hello!", voice="sage")

    confirm = admin_client.get(restore_url(first))
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "What will change" in html and "csrfmiddlewaretoken" in html and 'method="post"' in html
    front_desk.refresh_from_db()
    assert front_desk.voice == "sage"  # a GET changes nothing

    response = admin_client.post(restore_url(first), follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:calls_agentconfig_change", args=[front_desk.pk])
    front_desk.refresh_from_db()
    assert (front_desk.voice, front_desk.greeting) == (
        "marin",
        "Thanks for calling Acme Dental, how can I help?",
    )
    latest = front_desk.revisions.order_by("-number").first()
    assert (latest.number, latest.author, latest.comment) == (3, admin_user, "Restored revision 1")
    assert "Restored revision 1" in response.content.decode()


def test_restore_needs_csrf(client, admin_user, front_desk):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(admin_user)
    first = front_desk.revisions.get()
    front_desk.voice = "sage"
    front_desk.save()
    services.record_revision(front_desk)
    assert csrf_client.post(restore_url(first)).status_code == 403
    front_desk.refresh_from_db()
    assert front_desk.voice == "sage"


def test_restore_that_would_break_a_rule_reports_it(admin_client, front_desk):
    first = front_desk.revisions.get()
    edit(admin_client, front_desk, name="Reception")
    AgentConfig.objects.create(name="Front desk", instructions="Someone else took the old name.")
    response = admin_client.post(restore_url(first), follow=True)
    assert response.status_code == 200
    assert "cannot be restored" in response.content.decode()
    front_desk.refresh_from_db()
    assert front_desk.name == "Reception" and front_desk.revisions.count() == 2


def test_prompt_editor_can_view_and_restore_but_not_delete_revisions(client, editor, front_desk):
    client.force_login(editor)
    first = front_desk.revisions.get()
    edit(client, front_desk, greeting="Hello!")
    assert client.get(detail_url(first)).status_code == 200
    assert client.post(restore_url(first)).status_code == 302
    front_desk.refresh_from_db()
    assert front_desk.greeting.startswith("Thanks for calling")


def test_view_only_staff_cannot_restore(client, django_user_model, front_desk):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw-123456789", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_agentconfigrevision"))
    client.force_login(viewer)
    first = front_desk.revisions.get()
    assert client.get(detail_url(first)).status_code == 200
    assert client.post(restore_url(first)).status_code == 403


def test_unknown_revision_is_404(admin_client):
    assert admin_client.get(reverse("admin:calls_agentconfigrevision_change", args=[999])).status_code == 404
    assert admin_client.get("/admin/calls/agentconfigrevision/abc/change/").status_code in {302, 404}


def test_text_diff_folds_long_unchanged_runs_and_escapes_html():
    before = "\n".join(f"line {i}" for i in range(20)) + "\n<b>old</b>"
    after = "\n".join(f"line {i}" for i in range(20)) + "\n<b>new</b>"
    lines = text_diff_lines(before, after)
    ops = [line["op"] for line in lines]
    assert ops == ["gap", "ctx", "ctx", "del", "ins"]
    assert "18 unchanged lines" in lines[0]["html"]
    assert lines[3]["html"] == "&lt;b&gt;<del>old</del>&lt;/b&gt;"
    assert lines[4]["html"] == "&lt;b&gt;<ins>new</ins>&lt;/b&gt;"


def test_text_diff_shows_context_before_an_appended_line_and_no_one_line_folds():
    before = "\n".join(f"line {i}" for i in range(10))
    lines = text_diff_lines(before, before + "\nnew last line")
    assert [line["op"] for line in lines] == ["gap", "ctx", "ctx", "ins"]
    assert lines[0]["html"] == "⋯ 8 unchanged lines"
    short = text_diff_lines("a\nb\nc", "a\nb\nc\nd")
    assert [line["op"] for line in short] == ["ctx", "ctx", "ctx", "ins"]


def test_field_diffs_show_tools_added_and_removed():
    rows = build_field_diffs(
        {"tools": ["end_call", "transfer_call"], "voice": "marin"},
        {"tools": ["end_call", "lookup"], "voice": "marin"},
    )
    assert rows == [
        {
            "field": "tools",
            "label": "Tools",
            "kind": "list",
            "added": ["lookup"],
            "removed": ["transfer_call"],
            "kept": ["end_call"],
        }
    ]


def test_diffs_and_the_history_use_the_forms_labels(admin_client, front_desk):
    revision = edit(admin_client, front_desk, vad_threshold="0.7", max_call_minutes="20")

    html = admin_client.get(detail_url(revision)).content.decode()
    assert "VAD threshold" in html and "Max call length (minutes)" in html
    assert "Vad threshold" not in html and "Max call minutes" not in html
    listing = admin_client.get(reverse("admin:calls_agentconfigrevision_changelist")).content.decode()
    assert "VAD threshold" in listing and "Max call length (minutes)" in listing and "Vad threshold" not in listing


def test_prompts_saved_from_the_form_keep_unix_line_endings(admin_client, front_desk):
    edit(admin_client, front_desk, instructions="Line one.\r\nLine two.\rLine three.",
         greeting="Hi!\r\nHow can I help?")

    front_desk.refresh_from_db()
    assert front_desk.instructions == "Line one.\nLine two.\nLine three."
    assert front_desk.greeting == "Hi!\nHow can I help?"
    assert "\r" not in services.config_snapshot(front_desk)["instructions"]
