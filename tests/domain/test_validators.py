from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from calls import validators
from calls.models import AgentConfig, PhoneNumber, Tool


@pytest.mark.parametrize("number", ["+14155550123", "+442071234567", "+4930123456", "+861012345678901"])
def test_e164_accepts(number):
    validators.validate_e164(number)


@pytest.mark.parametrize(
    "number",
    [
        "",
        "14155550123",
        "+1 415 555 0123",
        "+1-415-555-0123",
        "+0123456789",
        "+123",
        "+1234567890123456",
        "+1415555O123",
        "tel:+14155550123",
    ],
)
def test_e164_rejects_with_an_example(number):
    with pytest.raises(ValidationError) as error:
        validators.validate_e164(number)
    assert "e.g. +14155550123" in error.value.messages[0]


@pytest.mark.parametrize("url", ["", "https://api.example.com/hook", "https://api.example.com:8443/x?y=1"])
def test_https_url_accepts(url):
    validators.validate_https_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://api.example.com/hook", "must use https://"),
        ("ftp://api.example.com/hook", "must use https://"),
        ("https:///nohost", "must use https://"),
        ("https://user:pass@api.example.com/hook", "not in the URL"),
    ],
)
def test_https_url_rejects(url, message):
    with pytest.raises(ValidationError, match=message):
        validators.validate_https_url(url)


@pytest.mark.parametrize(
    "name", ["gpt-realtime", "gpt-realtime-2025-08-28", "gpt-realtime-mini", "gpt-4o-realtime-preview", "gpt-live-1.1"]
)
def test_realtime_model_names(name):
    validators.validate_model_name(name)


@pytest.mark.parametrize("name", ["gpt-4o", "whisper-1", "", "GPT-REALTIME", "gpt-realtime; drop"])
def test_non_realtime_model_names(name):
    with pytest.raises(ValidationError, match="not an OpenAI voice model"):
        validators.validate_model_name(name)


def test_parameters_schema_accepts_an_object_schema():
    validators.validate_parameters_schema(validators.empty_parameters_schema())
    validators.validate_parameters_schema(
        {"type": "object", "properties": {"date": {"type": "string", "format": "date"}}, "required": ["date"]}
    )


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([], "must be a JSON object"),
        ("{}", "must be a JSON object"),
        ({"type": "objekt"}, "Invalid JSON Schema at type"),
        (
            {"type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}},
            "Invalid JSON Schema at properties/n/minimum",
        ),
        ({"type": "string"}, "must describe an object"),
        ({"properties": {}}, "must describe an object"),
    ],
)
def test_parameters_schema_rejects(schema, message):
    with pytest.raises(ValidationError, match=message):
        validators.validate_parameters_schema(schema)


@pytest.mark.django_db
def test_models_run_the_validators_on_full_clean():
    config = AgentConfig(name="x", instructions="x", model="gpt-4o", voice="robot", transfer_number="555")
    with pytest.raises(ValidationError) as error:
        config.full_clean()
    assert set(error.value.message_dict) == {"model", "voice", "transfer_number"}

    with pytest.raises(ValidationError) as error:
        PhoneNumber(
            number="4155550123", agent_config=AgentConfig.objects.create(name="y", instructions="y")
        ).full_clean()
    assert set(error.value.message_dict) == {"number"}


@pytest.mark.django_db
def test_tool_rules():
    with pytest.raises(ValidationError) as error:
        Tool(name="lookup", description="x", kind=Tool.Kind.HTTP, url="").full_clean()
    assert "url" in error.value.message_dict

    with pytest.raises(ValidationError) as error:
        Tool(name="launch_rocket", description="x", kind=Tool.Kind.BUILTIN).full_clean()
    assert "Built-in tools are end_call, transfer_call" in error.value.message_dict["name"][0]

    with pytest.raises(ValidationError) as error:
        Tool(
            name="has space", description="x", url="https://x.example.com", secret_header_name="X Key"
        ).full_clean()
    assert set(error.value.message_dict) == {"name", "secret_header_name"}

    tool = Tool(name="ok-tool_1", description="x", url="https://x.example.com")
    tool.full_clean()
    assert tool.secret_env_name == "TOOL_SECRET_OK_TOOL_1"


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1/x", "https://2130706433/x", "https://0x7f.1/x", "https://127.1/x", "https://10.1.2.3/x",
     "https://172.16.0.1/x", "https://169.254.169.254/latest", "https://[fd00:ec2::254]/x", "https://[::1]/x",
     "https://[::ffff:10.0.0.1]/x", "https://[64:ff9b::a9fe:a9fe]/x", "https://localhost/x", "https://a.localhost/x",
     "https://0.0.0.0/x"],
)
def test_tool_urls_naming_internal_addresses_are_refused(url, settings):
    settings.TOOL_ALLOWED_PRIVATE_HOSTS = []
    with pytest.raises(ValidationError) as error:
        validators.validate_https_url(url)
    assert "must reach a public server" in error.value.messages[0]


@pytest.mark.parametrize("url", ["https://8.8.8.8/x", "https://[2606:4700::1111]/x", "https://api.example.com/x",
                                 "https://deadbeef.example.com/x"])
def test_tool_urls_naming_public_hosts_pass(url, settings):
    settings.TOOL_ALLOWED_PRIVATE_HOSTS = []
    validators.validate_https_url(url)
