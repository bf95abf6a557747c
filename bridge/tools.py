"""Runs admin-defined HTTP tools for the media bridge, safely.

The bridge calls `run_http_tool(spec, arguments_json, context)` when the model finishes a function call. It
never raises for tool trouble: it returns a JSON string for the model, either
``{"ok": true, "status": 200, "result": <parsed JSON body, or text>}`` or
``{"ok": false, "error": "<short reason>"}`` (plus ``"status"`` when the tool answered with an HTTP error),
and the call goes on.

What a tool author receives
---------------------------
``POST <url>`` (https only) with ``Content-Type: application/json``, ``User-Agent: voiceops-bridge`` and the
body ``{"arguments": {...}, "call_sid": "CA...", "tool": "<name>"}``. Answer within the tool's timeout with a
2xx and a JSON body (``application/json``; anything else is passed on as text), at most 64 KiB. Redirects
are not followed.

When the operator sets ``TOOL_SECRET_<NAME>`` (tool name upper-cased, ``-`` → ``_``) in the bridge's
environment, the secret is sent in the tool's configured secret header (e.g. ``X-Api-Key``), if any, and
every request is signed::

    X-Voiceops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

Verify it over the raw body bytes, before parsing, and reject stale timestamps (replays)::

    import hashlib, hmac, time

    def verify(secret: str, header: str, raw_body: bytes, tolerance_s: int = 300) -> bool:
        fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        t, v1 = fields.get("t", ""), fields.get("v1", "")
        if not t.isdigit() or abs(time.time() - int(t)) > tolerance_s:
            return False
        expected = hmac.new(secret.encode(), f"{t}.".encode() + raw_body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, v1)

SSRF protection: the host is resolved once; if any address is private, loopback, link-local (cloud metadata
included), multicast, reserved or unspecified (also inside IPv4-mapped, 6to4 and NAT64 IPv6 addresses) the
call is refused, unless the exact host is in ``settings.TOOL_ALLOWED_PRIVATE_HOSTS`` (local development).
The connection then goes to the verified address itself, so a second DNS answer cannot redirect it (DNS
rebinding), while TLS still uses SNI and verifies the certificate for the original hostname.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from django.conf import settings
from opentelemetry.trace import SpanKind, Status, StatusCode

from bridge.metrics import TOOL_ERRORS, TOOL_LATENCY_MS, call_stats
from calls.tracing import call_span
from calls.validators import is_public_address

log = logging.getLogger(__name__)

USER_AGENT = "voiceops-bridge"
SIGNATURE_HEADER = "X-Voiceops-Signature"
MAX_RESPONSE_BYTES = 64 * 1024
MAX_TEXT_RESULT_BYTES = 4 * 1024
DEFAULT_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 30.0

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")


@dataclass(frozen=True)
class ToolCallContext:
    """Who is calling a tool: for the request body and the log line."""

    call_sid: str
    config_id: int | None
    call_id: str


class ToolError(Exception):
    """A failure the model may hear about: the message is short and carries no secrets or addresses."""

    def __init__(self, message: str, status: int | None = None, log_reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.log_reason = log_reason or message  # what the log line says: never argument values


async def run_http_tool(spec: dict[str, Any], arguments_json: str, call_context: ToolCallContext) -> str:
    """Run one HTTP tool call; always returns the JSON string for `function_call_output`."""
    name = str(spec.get("name", ""))
    # Name and outcome only: arguments may hold what the caller said (names, numbers).
    with call_span(f"tool.{name}", kind=SpanKind.CLIENT, tool=name, call_sid=call_context.call_sid,
                   config_id=call_context.config_id, call_id=call_context.call_id) as span:
        started = time.monotonic()
        output = await _run_http_tool(name, spec, arguments_json, call_context)
        call_stats.timing(TOOL_LATENCY_MS, (time.monotonic() - started) * 1000)
        if not output["ok"]:
            call_stats.count(TOOL_ERRORS)
        span.set_attribute("tool.ok", output["ok"])
        if "status" in output:
            span.set_attribute("http.response.status_code", output["status"])
        if not output["ok"]:
            span.set_status(Status(StatusCode.ERROR, "tool call failed"))
    return json.dumps(output, ensure_ascii=False)


async def _run_http_tool(
    name: str, spec: dict[str, Any], arguments_json: str, call_context: ToolCallContext
) -> dict[str, Any]:
    started = time.monotonic()
    try:
        status, result = await _call_tool(spec, arguments_json, call_context)
        output: dict[str, Any] = {"ok": True, "status": status, "result": result}
        outcome = str(status)
    except ToolError as exc:
        output = {"ok": False, "error": str(exc)}
        if exc.status is not None:
            output["status"] = exc.status
        outcome = f"error ({exc.log_reason})"
    except Exception as exc:  # never let a tool break the call
        # Only the type: an exception's message could quote arguments or headers.
        log.error("tool %s failed unexpectedly: %s", name, type(exc).__name__)
        output = {"ok": False, "error": "the tool call failed"}
        outcome = "error (unexpected)"
    elapsed_ms = (time.monotonic() - started) * 1000
    log.info(
        "tool %s call=%s call_id=%s status=%s ms=%.0f",
        name,
        call_context.call_sid,
        call_context.call_id,
        outcome,
        elapsed_ms,
    )
    return output


async def _call_tool(spec: dict[str, Any], arguments_json: str, context: ToolCallContext) -> tuple[int, Any]:
    arguments = parse_arguments(arguments_json, spec.get("parameters"))
    host, port, path = parse_tool_url(spec.get("url"))
    timeout_s = _timeout_of(spec)
    body = json.dumps(
        {"arguments": arguments, "call_sid": context.call_sid, "tool": spec.get("name", "")},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    headers = _request_headers(spec, body)
    try:
        tls = _tls_context(getattr(settings, "TOOL_CA_BUNDLE", "") or "")
    except (OSError, ssl.SSLError):
        raise ToolError("the bridge's TLS trust store is misconfigured", log_reason="bad TOOL_CA_BUNDLE") from None
    allowed_private = {h.lower() for h in getattr(settings, "TOOL_ALLOWED_PRIVATE_HOSTS", []) or []}

    deadline = time.monotonic() + timeout_s
    connection: _PinnedHTTPSConnection | None = None
    try:
        async with asyncio.timeout(timeout_s):  # the whole request: DNS, connect, TLS, send, read
            addresses = await _verified_addresses(host, port, allow_private=host.lower() in allowed_private)
            connection = _PinnedHTTPSConnection(host, port, addresses, tls, deadline)
            status, content_type, raw = await asyncio.to_thread(connection.post, path, body.encode(), headers)
    except TimeoutError:
        raise ToolError(f"the tool did not answer within {timeout_s:g} s") from None
    except ssl.SSLCertVerificationError:
        raise ToolError("the tool's TLS certificate could not be verified") from None
    except ssl.SSLError:
        raise ToolError("the TLS handshake with the tool failed") from None
    except http.client.HTTPException:
        raise ToolError("the tool sent an invalid HTTP response") from None
    except OSError:
        raise ToolError("the connection to the tool failed") from None
    finally:
        if connection is not None:
            # After a timeout or cancellation (the call ended) the worker thread may still wait on the
            # socket: unblock it now. After a normal exchange the socket is already closed; a no-op.
            connection.abort()
    return status, _interpret_response(status, content_type, raw)


# --- arguments and URL ----------------------------------------------------------------------------------
def parse_arguments(arguments_json: str, schema: Any) -> dict[str, Any]:
    """The model's arguments as a dict, validated against the tool's JSON Schema."""
    try:
        # The model sends "{}" for no arguments; tolerate an empty string as the same thing.
        arguments = json.loads(arguments_json) if arguments_json.strip() else {}
    except (json.JSONDecodeError, AttributeError, TypeError):
        raise ToolError("invalid arguments: not valid JSON") from None
    if not isinstance(arguments, dict):
        raise ToolError("invalid arguments: expected a JSON object")
    if schema:
        try:
            validator_class = jsonschema.validators.validator_for(schema)
            validator_class.check_schema(schema)
        except jsonschema.SchemaError:
            raise ToolError("the tool is misconfigured (invalid parameters schema)") from None
        error = jsonschema.exceptions.best_match(validator_class(schema).iter_errors(arguments))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path)
            problem = error.message if len(error.message) <= 200 else error.message[:200] + "…"
            # The model sees the validator's message (it may quote values); the log only the place.
            raise ToolError(
                f"invalid arguments{f' at {where}' if where else ''}: {problem}",
                log_reason=f"invalid arguments ({error.validator} at /{where})",
            )
    return arguments


def parse_tool_url(url: Any) -> tuple[str, int, str]:
    """(hostname, port, path with query) of an https URL; anything else is refused."""
    try:
        parts = urlsplit(str(url or ""))
        port = parts.port or 443
    except ValueError:
        raise ToolError("the tool URL is invalid") from None
    if parts.scheme.lower() != "https":
        raise ToolError("the tool URL must use https")
    if not parts.hostname:
        raise ToolError("the tool URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ToolError("the tool URL must not contain credentials")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, path


def _timeout_of(spec: dict[str, Any]) -> float:
    try:
        timeout_s = float(spec.get("timeout_s") or DEFAULT_TIMEOUT_S)
    except (TypeError, ValueError):
        timeout_s = DEFAULT_TIMEOUT_S
    return min(max(timeout_s, 0.1), MAX_TIMEOUT_S)


def secret_env_name(tool_name: str) -> str:
    return "TOOL_SECRET_" + tool_name.upper().replace("-", "_")


def sign(secret: str, body: str, timestamp: int) -> str:
    """The X-Voiceops-Signature header value for this body."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _request_headers(spec: dict[str, Any], body: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "Connection": "close",
    }
    # Read at call time so a rotated secret takes effect without a restart.
    secret = os.environ.get(secret_env_name(str(spec.get("name", ""))), "").strip()
    if secret:
        # Checked here, not by http.client, whose error message would quote the value.
        if not _HEADER_VALUE.fullmatch(secret):
            raise ToolError("the tool is misconfigured (its secret is not a valid header value)")
        header_name = str(spec.get("secret_header_name") or "").strip()
        if header_name:
            if not _HEADER_NAME.fullmatch(header_name):
                raise ToolError("the tool is misconfigured (invalid secret header name)")
            headers[header_name] = secret
        headers[SIGNATURE_HEADER] = sign(secret, body, int(time.time()))
    return headers


# --- SSRF guard -----------------------------------------------------------------------------------------
async def resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    """(family, sockaddr) for each address of host: the one DNS lookup of a tool call."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [(family, sockaddr) for family, _type, _proto, _name, sockaddr in infos]


async def _verified_addresses(
    host: str, port: int, *, allow_private: bool
) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    try:
        addresses = await resolve(host, port)
    except socket.gaierror:
        raise ToolError("the tool's host name could not be resolved") from None
    if not addresses:
        raise ToolError("the tool's host name could not be resolved")
    if not allow_private:
        for _family, sockaddr in addresses:
            try:
                address = ipaddress.ip_address(sockaddr[0])
            except ValueError:
                raise ToolError("the tool's host resolved to an unusable address") from None
            if not is_public_address(address):
                # The model is not told which address; the operator's log line is.
                raise ToolError("the tool's host is not a public address", log_reason=f"refused: {address}")
    # Keep order (the resolver's preference) but drop duplicates.
    return list(dict.fromkeys(addresses))


# --- the exchange ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _tls_context(ca_bundle: str) -> ssl.SSLContext:
    context = ssl.create_default_context()  # system CAs, hostname checking, no legacy protocols
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


class _PinnedHTTPSConnection(http.client.HTTPConnection):
    """HTTPS to already-verified addresses (never resolves the host again), TLS checked for the hostname.

    Blocking: runs in a worker thread. Every socket operation gets what is left of the deadline."""

    default_port = 443

    def __init__(
        self,
        host: str,
        port: int,
        addresses: list[tuple[socket.AddressFamily, tuple[Any, ...]]],
        tls: ssl.SSLContext,
        deadline: float,
    ) -> None:
        super().__init__(host, port)
        self._addresses = addresses
        self._tls = tls
        self._deadline = deadline
        self._tls_sock: ssl.SSLSocket | None = None

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("tool deadline passed")
        return remaining

    def connect(self) -> None:
        last_error: OSError = OSError("no address to connect to")
        for family, sockaddr in self._addresses:
            raw = socket.socket(family, socket.SOCK_STREAM)
            try:
                raw.settimeout(self._remaining())
                raw.connect(sockaddr)
            except OSError as exc:  # try the next verified address
                raw.close()
                last_error = exc
                continue
            try:
                self._tls_sock = self._tls.wrap_socket(raw, server_hostname=self.host)
            except BaseException:
                raw.close()
                raise
            self.sock = self._tls_sock
            return
        raise last_error

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, content type, body); the body stays unread for non-2xx answers."""
        try:
            self.request("POST", path, body=body, headers=headers)
            assert self._tls_sock is not None
            self._tls_sock.settimeout(self._remaining())
            response = self.getresponse()
            if not 200 <= response.status < 300:
                return response.status, "", b""
            content_type = response.getheader("Content-Type", "") or ""
            declared = response.getheader("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                raise ToolError("response too large")
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_RESPONSE_BYTES:
                # getresponse() may drop self.sock, but the response still reads through this socket.
                self._tls_sock.settimeout(self._remaining())
                chunk = response.read1(MAX_RESPONSE_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ToolError("response too large")
            return response.status, content_type, b"".join(chunks)
        finally:
            self.close()
            if self._tls_sock is not None:
                self._tls_sock.close()

    def abort(self) -> None:
        """From another thread: unblock a pending recv/send at once."""
        sock = self._tls_sock
        if sock is None:
            return
        # The plain socket's shutdown: SSLSocket.shutdown would tear down TLS state under the reader.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _interpret_response(status: int, content_type: str, raw: bytes) -> Any:
    if 300 <= status < 400:
        raise ToolError(
            f"the tool answered with a redirect (HTTP {status}); redirects are not followed", status=status
        )
    if not 200 <= status < 300:
        raise ToolError(f"the tool answered with HTTP {status}", status=status)
    if not raw:
        return None
    if "json" in content_type.lower():
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass  # mislabelled: hand it on as text
    if len(raw) > MAX_TEXT_RESULT_BYTES:
        return raw[:MAX_TEXT_RESULT_BYTES].decode("utf-8", errors="ignore") + " …[truncated]"
    return raw.decode("utf-8", errors="replace")
