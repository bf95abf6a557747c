"""Field validators with messages staff can act on."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def validate_e164(value: str) -> None:
    if not E164.match(value or ""):
        raise ValidationError(
            "%(value)s is not an E.164 number: a + then the country code and number, digits only, "
            "e.g. +14155550123.",
            params={"value": value},
        )


def validate_time_zone(value: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            "%(value)s is not a time zone name (IANA, e.g. Europe/Paris or America/New_York).",
            params={"value": value},
        ) from None


def validate_https_url(value: str) -> None:
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValidationError("Tool URLs must use https:// (the request carries caller data and a secret).")
    if parts.username or parts.password:
        raise ValidationError("Put credentials in the secret header, not in the URL.")
    problem = internal_host_problem(value)
    if problem:
        raise ValidationError(
            "Tool URLs must reach a public server: %(problem)s. (For a tool on this machine during development, "
            "list the host in TOOL_ALLOWED_PRIVATE_HOSTS.)", params={"problem": problem}
        )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address really reaches, for the forms a stack or gateway translates."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally, in any form a resolver accepts ("127.1", "0x7f000001",
    "2130706433" all reach 127.0.0.1); None for a host name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-FxX.]+", host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def internal_host_problem(url: str) -> str | None:
    """Why a tool URL names an internal host (a literal loopback, private, link-local or metadata address, or
    localhost), or None. Hosts in TOOL_ALLOWED_PRIVATE_HOSTS (local development) pass, as at run time; names
    that resolve to such addresses are refused at run time by the bridge's guard."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if not host or host in {h.lower() for h in settings.TOOL_ALLOWED_PRIVATE_HOSTS}:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is this machine"
    address = literal_address(host)
    if address is not None and not is_public_address(address):
        return f"{host} is not a public address (loopback, private, link-local or cloud metadata)"
    return None


def validate_model_name(value: str) -> None:
    if not re.match(r"^gpt-[a-z0-9.\-]*(realtime|live)[a-z0-9.\-]*$", value or ""):
        raise ValidationError(
            "%(value)s is not an OpenAI voice model (e.g. gpt-realtime-2.1 or gpt-live-1.1).", params={"value": value}
        )


def empty_parameters_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}, "required": []}


def validate_parameters_schema(value: Any) -> None:
    """The tool's arguments must be described by a valid JSON Schema of an object."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(value, dict):
        raise ValidationError("Parameters must be a JSON object (a JSON Schema), not %(kind)s.",
                              params={"kind": type(value).__name__})
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ValidationError(
            "Invalid JSON Schema at %(where)s: %(msg)s", params={"where": where, "msg": exc.message}
        ) from None
    if value.get("type") != "object":
        raise ValidationError('The schema must describe an object: {"type": "object", "properties": {...}}.')
    if not isinstance(value.get("properties", {}), dict):
        raise ValidationError('"properties" must be an object mapping argument names to schemas.')
