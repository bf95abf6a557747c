"""Tools and phone numbers in the admin: pretty JSON schema, HTTPS URLs, E.164, built-ins read-only."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from calls.models import PhoneNumber, Tool

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}


def tool_data(**overrides) -> dict[str, str]:
    data = {
        "name": "lookup_order",
        "kind": "http",
        "description": "Look up an order by its id.",
        "parameters": json.dumps(SCHEMA),
        "url": "https://api.example.com/orders",
        "timeout_s": "5",
        "secret_header_name": "X-Api-Key",
        "is_active": "on",
    }
    data.update(overrides)
    return data


def add_tool(client, **overrides):
    return client.post(reverse("admin:calls_tool_add"), tool_data(**overrides))


def test_http_tool_is_saved(admin_client):
    response = add_tool(admin_client)
    assert response.status_code == 302
    tool = Tool.objects.get(name="lookup_order")
    assert tool.parameters == SCHEMA and tool.url == "https://api.example.com/orders"


def test_url_without_scheme_is_taken_as_https(admin_client):
    assert add_tool(admin_client, url="api.example.com/orders").status_code == 302
    assert Tool.objects.get(name="lookup_order").url == "https://api.example.com/orders"


def test_schema_is_shown_as_indented_json(admin_client, http_tool):
    response = admin_client.get(reverse("admin:calls_tool_change", args=[http_tool.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    # Indented two spaces per level (PostgreSQL's jsonb may reorder the keys).
    assert "\n  &quot;type&quot;: &quot;object&quot;" in html
    assert "\n  &quot;properties&quot;: {\n    &quot;order_id&quot;: {\n      &quot;type&quot;" in html
    assert "TOOL_SECRET_LOOKUP_ORDER" in html


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"parameters": '{"type": "object", "properties": {'}, "This is not valid JSON"),
        (
            {"parameters": '{"type": "object", "properties": {"a": {"type": "strin"}}}'},
            "Invalid JSON Schema at",
        ),
        ({"parameters": '{"type": "array"}'}, "The schema must describe an object"),
        ({"parameters": '["order_id"]'}, "Parameters must be a JSON object"),
        ({"url": "http://api.example.com/orders"}, "Tool URLs must use https://"),
        ({"url": "https://user:pw@api.example.com/x"}, "Put credentials in the secret header"),
        ({"url": ""}, "An HTTP tool needs an https:// URL."),
        ({"name": "look up"}, "Letters, digits, _ and - only"),
        ({"kind": "builtin", "name": "end_call"}, "Built-in tools come with voiceops"),
        ({"timeout_s": "120"}, "Ensure this value is less than or equal to 30.0."),
        ({"url": "https://127.0.0.1/hook"}, "127.0.0.1 is not a public address"),
        ({"url": "https://10.0.0.5/hook"}, "10.0.0.5 is not a public address"),
        ({"url": "https://192.168.1.1:8443/hook"}, "192.168.1.1 is not a public address"),
        ({"url": "https://169.254.169.254/latest/meta-data/"}, "169.254.169.254 is not a public address"),
        ({"url": "https://[fd00:ec2::254]/latest"}, "fd00:ec2::254 is not a public address"),
        ({"url": "https://[::ffff:127.0.0.1]/x"}, "::ffff:127.0.0.1 is not a public address"),
        ({"url": "https://localhost:9000/x"}, "localhost is this machine"),
    ],
)
def test_bad_tool_input_is_refused_clearly_and_nothing_saved(admin_client, overrides, message):
    before = Tool.objects.count()
    response = add_tool(admin_client, **overrides)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Tool.objects.count() == before


def test_tool_on_an_allowed_private_host_is_saved_for_local_development(admin_client, settings):
    settings.TOOL_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    assert add_tool(admin_client, url="https://127.0.0.1:9443/orders").status_code == 302


def test_add_form_starts_with_an_empty_object_schema(admin_client):
    form = admin_client.get(reverse("admin:calls_tool_add")).context["adminform"].form
    assert json.loads(form["parameters"].value()) == {"type": "object", "properties": {}, "required": []}


def test_invalid_json_is_shown_back_as_typed(admin_client):
    typed = '{"type": "object", "properties": {'
    response = add_tool(admin_client, parameters=typed)
    assert "line 1, column" in response.content.decode()
    assert response.context["adminform"].form["parameters"].value() == typed


def test_builtin_tools_have_read_only_name_and_kind_and_cannot_be_deleted(admin_client):
    end_call = Tool.objects.get(name="end_call")
    url = reverse("admin:calls_tool_change", args=[end_call.pk])
    response = admin_client.get(url)
    form = response.context["adminform"].form
    assert "name" not in form.fields and "kind" not in form.fields and "url" not in form.fields
    response = admin_client.post(
        url,
        {
            "name": "renamed",
            "kind": "http",
            "description": "Hang up.",
            "parameters": json.dumps(end_call.parameters),
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    end_call.refresh_from_db()
    assert (end_call.name, end_call.kind, end_call.description) == ("end_call", "builtin", "Hang up.")
    assert admin_client.get(reverse("admin:calls_tool_delete", args=[end_call.pk])).status_code == 403


def test_bulk_delete_refuses_builtins_but_deletes_http_tools(admin_client, http_tool):
    changelist = reverse("admin:calls_tool_changelist")
    everything = [str(pk) for pk in Tool.objects.values_list("pk", flat=True)]
    response = admin_client.post(
        changelist, {"action": "delete_selected", "_selected_action": everything, "post": "yes"}
    )
    assert response.status_code == 403
    assert Tool.objects.count() == 3
    response = admin_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [str(http_tool.pk)], "post": "yes"}
    )
    assert response.status_code == 302
    assert sorted(Tool.objects.values_list("name", flat=True)) == ["end_call", "transfer_call"]


def number_data(config, **overrides) -> dict[str, str]:
    data = {
        "number": "+15550001111",
        "label": "Main line",
        "agent_config": str(config.pk),
        "is_active": "on",
        "twilio_sid": "",
    }
    data.update(overrides)
    return data


def test_number_is_saved_and_listed(admin_client, front_desk):
    response = admin_client.post(
        reverse("admin:calls_phonenumber_add"), number_data(front_desk, number="+1 555 000-1111")
    )
    assert response.status_code == 302
    assert PhoneNumber.objects.get().number == "+15550001111"
    listing = admin_client.get(reverse("admin:calls_phonenumber_changelist")).content.decode()
    assert "+15550001111" in listing and "Main line" in listing and "Front desk" in listing


@pytest.mark.parametrize("number", ["5550001111", "+0555000111", "+1555abc1111", "+1234", "+1234567890123456"])
def test_non_e164_numbers_are_refused(admin_client, front_desk, number):
    response = admin_client.post(reverse("admin:calls_phonenumber_add"), number_data(front_desk, number=number))
    assert response.status_code == 200
    assert "is not an E.164 number" in response.content.decode()
    assert not PhoneNumber.objects.exists()


def test_duplicate_number_is_refused(admin_client, front_desk):
    PhoneNumber.objects.create(number="+15550001111", agent_config=front_desk)
    response = admin_client.post(reverse("admin:calls_phonenumber_add"), number_data(front_desk))
    assert response.status_code == 200
    assert "Phone number with this Number already exists." in response.content.decode()
