"""`seed_demo` (what `make run` runs): the README's number is routed, the dashboard URL is printed, and the
configuration it creates passes check_config without warnings of its own making."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from calls.checks import check_services
from calls.models import AgentConfig, PhoneNumber

pytestmark = pytest.mark.django_db


def test_seeds_the_number_the_readme_dials_and_prints_the_dashboard(settings, tmp_path, monkeypatch):
    from calls.management.commands import seed_demo

    monkeypatch.setattr(seed_demo, "CREDENTIALS_FILE", tmp_path / ".admin-credentials")
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", stdout=out)
    call_command("seed_demo", stdout=StringIO())  # idempotent

    assert PhoneNumber.objects.get(number="+15005550006").agent_config == AgentConfig.objects.get(is_default=True)
    assert f"Dashboard: http://127.0.0.1:{settings.PORT}/dashboard/" in out.getvalue()
    readme = (settings.BASE_DIR / "README.md").read_text()
    assert "--to +15005550006" in readme


def test_its_own_config_raises_no_warning(settings, tmp_path, monkeypatch):
    from calls.management.commands import seed_demo

    monkeypatch.setattr(seed_demo, "CREDENTIALS_FILE", tmp_path / ".admin-credentials")
    settings.DEBUG = True
    call_command("seed_demo", stdout=StringIO())

    config = AgentConfig.objects.get(is_default=True)
    assert set(config.tools.values_list("name", flat=True)) == {"end_call", "transfer_call"}
    ids = {message.id for message in check_services(databases=["default"])}
    assert "voiceops.W205" not in ids  # "transfer_call enabled without a transfer number"
    assert "voiceops.E205" not in ids and "voiceops.E206" not in ids


def test_the_readmes_question_wav_exists_and_reads_as_speech(settings):
    from calls.simulators import audio

    ulaw = audio.read_wav_ulaw(settings.BASE_DIR / "tests" / "fixtures" / "question.wav")
    assert 1000 <= audio.duration_ms(ulaw) <= 5000
    assert "--wav tests/fixtures/question.wav" in (settings.BASE_DIR / "README.md").read_text()
