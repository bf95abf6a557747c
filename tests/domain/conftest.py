from __future__ import annotations

import pytest

from calls import services
from calls.models import AgentConfig, Call
from tests.conftest import new_call_sid


@pytest.fixture
def config(default_config: AgentConfig) -> AgentConfig:
    return default_config


@pytest.fixture
def call(config: AgentConfig) -> Call:
    return services.start_call(new_call_sid(), "AC" + "0" * 32, "+14155550100", "+14155550199", config)
