"""Recordings stored in a temporary MEDIA_ROOT; staff with and without the listen permission."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission

from calls import services
from calls.models import AgentConfig, Call
from tests.outbound.conftest import outbound_config, twilio_rest, twilio_rest_server  # noqa: F401 - fixtures
from tests.web.conftest import front_desk  # noqa: F401 - a fixture
from tests.web.helpers import add_conversation, make_call
from tests.webhook.test_transfer import transferred  # noqa: F401 - a fixture

WAV = b"RIFF" + bytes(range(256)) * 40  # stands in for a WAV: the serving code never parses it


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Any) -> Any:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def recorded_call(front_desk: AgentConfig) -> Call:  # noqa: F811 - the fixture above
    call = make_call(front_desk)
    add_conversation(call)
    services.save_recording(call.pk, WAV)
    call.refresh_from_db()
    return call


def staff(django_user_model: Any, name: str, *perms: str) -> Any:
    user = django_user_model.objects.create_user(name, f"{name}@example.com", "pass-123-xyz", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="calls", codename__in=perms))
    return user


@pytest.fixture
def listener(django_user_model: Any) -> Any:
    return staff(django_user_model, "listener", "view_call", "listen_recording")


@pytest.fixture
def viewer(django_user_model: Any) -> Any:
    """Sees calls and transcripts, may not listen."""
    return staff(django_user_model, "viewer", "view_call")
