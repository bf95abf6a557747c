"""bridge.tools against a real HTTPS server on loopback: round trips, signing, limits, and the SSRF guard."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from typing import Any

import pytest

from bridge import tools
from bridge.tools import ToolCallContext, is_public_address, run_http_tool

CONTEXT = ToolCallContext(call_sid="CA" + "1" * 32, config_id=3, call_id="call_abc")
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "minLength": 3}},
    "required": ["order_id"],
    "additionalProperties": False,
}


def make_spec(url: str, **overrides: Any) -> dict[str, Any]:
    spec = {
        "kind": "http",
        "name": "lookup_order",
        "description": "Looks up an order.",
        "parameters": ORDER_SCHEMA,
        "url": url,
        "timeout_s": 5.0,
        "secret_header_name": "",
        "tool_id": 4,
    }
    spec.update(overrides)
    return spec


async def run(spec: dict[str, Any], arguments: Any = None) -> dict[str, Any]:
    arguments_json = (
        arguments if isinstance(arguments, str) else json.dumps(arguments or {"order_id": "A-100"})
    )
    output = await run_http_tool(spec, arguments_json, CONTEXT)
    assert isinstance(output, str)
    return json.loads(output)


def verify_signature(secret: str, header: str, raw_body: bytes, tolerance_s: int = 300) -> bool:
    """What a tool author does (the module docstring's recipe)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    t, v1 = fields.get("t", ""), fields.get("v1", "")
    if not t.isdigit() or abs(time.time() - int(t)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1)


def fake_resolver(answers: dict[str, list[str]], calls: list[str] | None = None):
    """Stands in for DNS: host → addresses, in the shape bridge.tools.resolve returns."""

    async def resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown host")
        result = []
        for text in answers[host]:
            if ipaddress.ip_address(text).version == 4:
                result.append((socket.AF_INET, (text, port)))
            else:
                result.append((socket.AF_INET6, (text, port, 0, 0)))
        return result

    return resolve


# --- round trips ----------------------------------------------------------------------------------------
async def test_success_round_trip_signed_with_secret_header(tool_server, tool_settings, monkeypatch) -> None:
    secret = "s3cr3t-value-for-tests"
    monkeypatch.setenv("TOOL_SECRET_LOOKUP_ORDER", secret)  # name upper-cased, "-" → "_"
    spec = make_spec(tool_server.url("/echo?v=2"), name="lookup-order", secret_header_name="X-Api-Key")

    result = await run(spec, {"order_id": "A-100"})

    assert result == {
        "ok": True,
        "status": 200,
        "result": {
            "received": {
                "arguments": {"order_id": "A-100"},
                "call_sid": CONTEXT.call_sid,
                "tool": "lookup-order",
            },
            "greeting": "héllo",
        },
    }
    [request] = tool_server.requests
    assert request.path == "/echo?v=2"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "voiceops-bridge"
    assert request.headers["X-Api-Key"] == secret
    assert verify_signature(secret, request.headers["X-Voiceops-Signature"], request.body)
    assert not verify_signature("another-secret", request.headers["X-Voiceops-Signature"], request.body)
    assert not verify_signature(secret, request.headers["X-Voiceops-Signature"], request.body + b" ")
    assert secret not in json.dumps(result)


async def test_secret_rotation_is_read_at_call_time(tool_server, tool_settings, monkeypatch) -> None:
    spec = make_spec(tool_server.url("/echo"), secret_header_name="X-Api-Key")
    monkeypatch.setenv("TOOL_SECRET_LOOKUP_ORDER", "first")
    await run(spec)
    monkeypatch.setenv("TOOL_SECRET_LOOKUP_ORDER", "second")
    await run(spec)
    assert [r.headers["X-Api-Key"] for r in tool_server.requests] == ["first", "second"]


async def test_without_secret_no_secret_header_and_no_signature(
    tool_server, tool_settings, monkeypatch
) -> None:
    monkeypatch.delenv("TOOL_SECRET_LOOKUP_ORDER", raising=False)
    result = await run(make_spec(tool_server.url("/echo"), secret_header_name="X-Api-Key"))
    assert result["ok"] is True
    [request] = tool_server.requests
    assert "X-Api-Key" not in request.headers
    assert "X-Voiceops-Signature" not in request.headers


async def test_secret_signs_even_without_a_secret_header(tool_server, tool_settings, monkeypatch) -> None:
    monkeypatch.setenv("TOOL_SECRET_LOOKUP_ORDER", "only-signing")
    assert (await run(make_spec(tool_server.url("/echo"))))["ok"] is True
    [request] = tool_server.requests
    assert verify_signature("only-signing", request.headers["X-Voiceops-Signature"], request.body)
    assert "only-signing" not in json.dumps(request.headers)


async def test_secret_that_is_not_a_header_value_is_refused_without_quoting_it(
    tool_server, tool_settings, monkeypatch
) -> None:
    monkeypatch.setenv("TOOL_SECRET_LOOKUP_ORDER", "abc\r\nX-Evil: 1")
    result = await run(make_spec(tool_server.url("/echo"), secret_header_name="X-Api-Key"))
    assert result["ok"] is False and "secret" in result["error"]
    assert "abc" not in result["error"]
    assert tool_server.requests == []


async def test_text_body_is_truncated_for_the_model(tool_server, tool_settings) -> None:
    result = await run(make_spec(tool_server.url("/text")))
    assert result["ok"] is True and result["status"] == 200
    assert result["result"].startswith("aaaa")
    assert 4096 <= len(result["result"]) < 4200
    assert result["result"].endswith("[truncated]")


async def test_empty_success_body(tool_server, tool_settings) -> None:
    assert await run(make_spec(tool_server.url("/empty"))) == {"ok": True, "status": 204, "result": None}


async def test_hostname_is_pinned_to_the_verified_address_and_tls_checks_the_name(
    tool_server, tool_settings, monkeypatch
) -> None:
    """One lookup only: http.client never resolves tool.example itself (it could not: no such DNS name)."""
    lookups: list[str] = []
    monkeypatch.setattr(tools, "resolve", fake_resolver({"tool.example": ["127.0.0.1"]}, lookups))
    tool_settings.TOOL_ALLOWED_PRIVATE_HOSTS = ["tool.example"]

    result = await run(make_spec(tool_server.url("/echo", host="tool.example")))

    assert result["ok"] is True, result
    assert lookups == ["tool.example"]
    assert tool_server.requests[0].headers["Host"] == f"tool.example:{tool_server.port}"


async def test_certificate_for_another_name_is_refused(tool_server, tool_settings, monkeypatch) -> None:
    monkeypatch.setattr(tools, "resolve", fake_resolver({"evil.example": ["127.0.0.1"]}))
    tool_settings.TOOL_ALLOWED_PRIVATE_HOSTS = ["evil.example"]
    result = await run(make_spec(tool_server.url("/echo", host="evil.example")))
    assert result == {"ok": False, "error": "the tool's TLS certificate could not be verified"}
    assert tool_server.requests == []


async def test_untrusted_certificate_is_refused(tool_server, tool_settings) -> None:
    tool_settings.TOOL_CA_BUNDLE = ""  # system CAs only: the test CA is unknown
    result = await run(make_spec(tool_server.url("/echo")))
    assert result == {"ok": False, "error": "the tool's TLS certificate could not be verified"}


# --- arguments ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"order_id": 5}, "invalid arguments at order_id: 5 is not of type 'string'"),
        ({"order_id": "A"}, "invalid arguments at order_id: 'A' is too short"),
        ({}, "invalid arguments: 'order_id' is a required property"),
        (
            {"order_id": "A-1", "x": 1},
            "invalid arguments: Additional properties are not allowed ('x' was unexpected)",
        ),
    ],
)
async def test_schema_invalid_arguments_are_refused_before_any_request(
    tool_server, tool_settings, arguments, expected
) -> None:
    result = await run(make_spec(tool_server.url("/echo")), json.dumps(arguments))
    assert result == {"ok": False, "error": expected}
    assert tool_server.requests == []


@pytest.mark.parametrize(
    ("arguments_json", "expected"),
    [
        ("{not json", "invalid arguments: not valid JSON"),
        ('["order_id"]', "invalid arguments: expected a JSON object"),
        ("null", "invalid arguments: expected a JSON object"),
    ],
)
async def test_arguments_that_are_not_a_json_object(
    tool_server, tool_settings, arguments_json, expected
) -> None:
    result = await run(make_spec(tool_server.url("/echo")), arguments_json)
    assert result == {"ok": False, "error": expected}
    assert tool_server.requests == []


async def test_broken_schema_is_reported_as_misconfiguration(tool_server, tool_settings) -> None:
    spec = make_spec(tool_server.url("/echo"), parameters={"type": "no-such-type"})
    result = await run(spec)
    assert result["ok"] is False and "misconfigured" in result["error"]


# --- limits and failures --------------------------------------------------------------------------------
async def test_timeout_covers_the_whole_request(tool_server, tool_settings) -> None:
    tool_server.slow_seconds = 3.0
    started = time.monotonic()
    result = await run(make_spec(tool_server.url("/slow"), timeout_s=0.5))
    elapsed = time.monotonic() - started
    assert result == {"ok": False, "error": "the tool did not answer within 0.5 s"}
    assert 0.45 <= elapsed < 1.5
    assert len(tool_server.requests) == 1


@pytest.mark.parametrize("path", ["/big", "/big-unsized", "/endless"])
async def test_oversized_response_is_refused(tool_server, tool_settings, path) -> None:
    started = time.monotonic()
    assert await run(make_spec(tool_server.url(path))) == {"ok": False, "error": "response too large"}
    assert time.monotonic() - started < 2.0  # stopped at the cap, not at the 5 s timeout


async def test_timeout_covers_dns(tool_settings, monkeypatch) -> None:
    async def slow_dns(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
        await asyncio.sleep(3)
        return [(socket.AF_INET, ("93.184.216.34", port))]

    monkeypatch.setattr(tools, "resolve", slow_dns)
    started = time.monotonic()
    result = await run(make_spec("https://slow-dns.example.com/", timeout_s=0.5))
    assert result == {"ok": False, "error": "the tool did not answer within 0.5 s"}
    assert time.monotonic() - started < 1.5


async def test_non_2xx_is_an_error_with_status_and_no_body(tool_server, tool_settings) -> None:
    result = await run(make_spec(tool_server.url("/fail")))
    assert result == {"ok": False, "status": 500, "error": "the tool answered with HTTP 500"}
    assert "10.0.0.7" not in json.dumps(result)


async def test_redirect_is_not_followed(tool_server, tool_settings) -> None:
    result = await run(make_spec(tool_server.url("/redirect")))
    assert result["ok"] is False and result["status"] == 302
    assert "redirect" in result["error"]
    assert "169.254" not in result["error"]
    assert len(tool_server.requests) == 1


async def test_connection_refused(tool_settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening
        result = await run(make_spec(f"https://127.0.0.1:{port}/"))
    assert result == {"ok": False, "error": "the connection to the tool failed"}


async def test_unresolvable_host(tool_settings, monkeypatch) -> None:
    monkeypatch.setattr(tools, "resolve", fake_resolver({}))
    result = await run(make_spec("https://nowhere.example/"))
    assert result == {"ok": False, "error": "the tool's host name could not be resolved"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1/echo", "the tool URL must use https"),
        ("ftp://example.com/x", "the tool URL must use https"),
        ("", "the tool URL must use https"),
        ("https:///no-host", "the tool URL has no host"),
        ("https://user:pw@example.com/", "the tool URL must not contain credentials"),
        ("https://example.com:99999/", "the tool URL is invalid"),
    ],
)
async def test_bad_urls_are_refused(tool_settings, url, expected) -> None:
    assert await run(make_spec(url)) == {"ok": False, "error": expected}


async def test_plain_http_server_is_never_contacted(tool_settings) -> None:
    """An http:// URL is refused before any connection: a listening socket sees no client."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        result = await run(make_spec(f"http://127.0.0.1:{listener.getsockname()[1]}/"))
        with pytest.raises(TimeoutError):
            listener.accept()
    assert result["ok"] is False


# --- SSRF guard -----------------------------------------------------------------------------------------
REFUSED = {"ok": False, "error": "the tool's host is not a public address"}


async def test_loopback_refused_when_not_allow_listed(tool_server, tool_settings) -> None:
    tool_settings.TOOL_ALLOWED_PRIVATE_HOSTS = []
    assert await run(make_spec(tool_server.url("/echo"))) == REFUSED
    assert await run(make_spec(tool_server.url("/echo", host="localhost"))) == REFUSED
    assert tool_server.requests == []


async def test_allow_list_matches_the_exact_host(tool_server, tool_settings) -> None:
    tool_settings.TOOL_ALLOWED_PRIVATE_HOSTS = ["localhost"]
    assert await run(make_spec(tool_server.url("/echo", host="127.0.0.1"))) == REFUSED
    assert (await run(make_spec(tool_server.url("/echo", host="localhost"))))["ok"] is True
    assert len(tool_server.requests) == 1


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",  # cloud metadata
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.10",
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 - a target to refuse, nothing binds here
        "[::1]",
        "[fd00:ec2::254]",  # AWS metadata over IPv6
        "[fe80::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped loopback
        "[::ffff:169.254.169.254]",
        "[::ffff:a00:1]",  # ::ffff:10.0.0.1 written in hex
    ],
)
async def test_non_public_ip_literals_are_refused(tool_settings, host) -> None:
    assert await run(make_spec(f"https://{host}/latest/meta-data/")) == REFUSED


async def test_hostname_resolving_to_a_private_address_is_refused(tool_settings, monkeypatch, caplog) -> None:
    monkeypatch.setattr(tools, "resolve", fake_resolver({"orders.example.com": ["10.0.0.5"]}))
    with caplog.at_level(logging.INFO, logger="bridge.tools"):
        assert await run(make_spec("https://orders.example.com/lookup")) == REFUSED
    [line] = [r.getMessage() for r in caplog.records if r.name == "bridge.tools"]
    assert "refused: 10.0.0.5" in line  # the operator learns why; the model does not


async def test_missing_ca_bundle_is_an_error_result(tool_server, tool_settings, tmp_path) -> None:
    tool_settings.TOOL_CA_BUNDLE = str(tmp_path / "missing.pem")
    result = await run(make_spec(tool_server.url("/echo")))
    assert result == {"ok": False, "error": "the bridge's TLS trust store is misconfigured"}


async def test_hostname_with_any_private_address_is_refused(tool_settings, monkeypatch) -> None:
    """Public first, metadata second: checking only the first answer would let this through."""
    monkeypatch.setattr(
        tools, "resolve", fake_resolver({"mixed.example.com": ["93.184.216.34", "169.254.169.254"]})
    )
    assert await run(make_spec("https://mixed.example.com/lookup")) == REFUSED


async def test_hostname_resolving_to_ipv4_mapped_private_address_is_refused(
    tool_settings, monkeypatch
) -> None:
    monkeypatch.setattr(tools, "resolve", fake_resolver({"v6.example.com": ["::ffff:10.9.8.7"]}))
    assert await run(make_spec("https://v6.example.com/lookup")) == REFUSED


async def test_refusal_happens_before_connecting(tool_settings, monkeypatch) -> None:
    monkeypatch.setattr(tools, "resolve", fake_resolver({"orders.example.com": ["10.0.0.5"]}))

    def no_connections(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a socket was opened for a refused host")

    monkeypatch.setattr(tools.socket, "socket", no_connections)
    assert await run(make_spec("https://orders.example.com/lookup")) == REFUSED


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("10.0.0.1", False),
        ("172.31.255.255", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address to classify, nothing binds here
        ("224.0.0.251", False),
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("ff0e::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::ffff:192.168.1.1", False),
        ("2002:a00:1::1", False),  # 6to4 wrapping 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 wrapping 169.254.169.254
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


# --- logging --------------------------------------------------------------------------------------------
async def test_one_log_line_per_call_without_arguments_or_secrets(
    tool_server, tool_settings, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("TOOL_SECRET_LOOKUP_ORDER", "hush-hush-secret")
    spec = make_spec(tool_server.url("/echo"), secret_header_name="X-Api-Key")
    with caplog.at_level(logging.DEBUG, logger="bridge.tools"):
        await run(spec, {"order_id": "PRIVATE-ORDER-42"})
        await run(spec, {"order_id": ["OTHER-PRIVATE-VALUE"]})
    lines = [r.getMessage() for r in caplog.records if r.name == "bridge.tools"]
    assert len(lines) == 2
    assert "lookup_order" in lines[0] and "status=200" in lines[0] and "ms=" in lines[0]
    assert "invalid arguments" in lines[1]
    logged = "\n".join(lines)
    assert "PRIVATE-ORDER-42" not in logged and "OTHER-PRIVATE-VALUE" not in logged
    assert "hush-hush-secret" not in logged


async def test_cancellation_propagates_and_frees_the_worker_thread(tool_server, tool_settings, monkeypatch) -> None:
    """When the call ends mid-tool the bridge cancels the task: that must not be turned into a result, and the
    blocked worker thread must let go at once rather than when the slow server finally answers."""
    worker_done = threading.Event()
    original_post = tools._PinnedHTTPSConnection.post

    def recording_post(self: Any, *args: Any) -> Any:
        try:
            return original_post(self, *args)
        finally:
            worker_done.set()

    monkeypatch.setattr(tools._PinnedHTTPSConnection, "post", recording_post)
    tool_server.slow_seconds = 4.0
    spec = make_spec(tool_server.url("/slow"), timeout_s=10.0)
    task = asyncio.create_task(run_http_tool(spec, '{"order_id": "A-1"}', CONTEXT))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(worker_done.wait, 1.5)
