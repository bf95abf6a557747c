from __future__ import annotations

import itertools

import pytest

from calls import services
from calls.models import AgentConfig, Call

_sids = itertools.count(1)


def new_call_sid() -> str:
    return f"CA{next(_sids):032x}"


@pytest.fixture
def config(db: None) -> AgentConfig:
    config = AgentConfig.objects.create(
        name="Front desk",
        instructions="You answer the phone for Example Dental.",
        greeting="Hello!",
        is_default=True,
    )
    services.record_revision(config)
    return config


@pytest.fixture
def call(config: AgentConfig) -> Call:
    return services.start_call(new_call_sid(), "AC" + "0" * 32, "+14155550100", "+14155550199", config)
