"""The container entrypoint that assembles DATABASE_URL and allows the task IP for ALB health checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "runtime"))

from voiceops_entrypoint import (
    add_task_ip_to_allowed_hosts,
    database_url_from_parts,
    ensure_database_url,
)

BASE = {"DB_HOST": "db.internal", "DB_PORT": "5432", "DB_NAME": "voiceops", "DB_SSLMODE": "require"}


def test_url_from_ecs_injected_fields_quotes_the_password() -> None:
    env = {**BASE, "DB_USER": "voiceops", "DB_PASSWORD": "p@ss/w:rd"}
    assert ensure_database_url(env) is True
    assert env["DATABASE_URL"] == "postgres://voiceops:p%40ss%2Fw%3Ard@db.internal:5432/voiceops?sslmode=require"


def test_url_from_app_runner_secret_json() -> None:
    env = {**BASE, "DB_SECRET": json.dumps({"username": "u", "password": "pw"})}
    ensure_database_url(env)
    assert env["DATABASE_URL"].startswith("postgres://u:pw@db.internal:5432/voiceops")


def test_url_from_secret_arn_fetches_once() -> None:
    calls: list[str] = []

    def fetch(arn: str) -> str:
        calls.append(arn)
        return json.dumps({"username": "u", "password": "pw"})

    env = {**BASE, "DB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x"}
    ensure_database_url(env, fetch_secret=fetch)
    assert calls == ["arn:aws:secretsmanager:us-east-1:1:secret:x"]
    assert "u:pw@" in env["DATABASE_URL"]


def test_explicit_database_url_wins_and_nothing_without_db_host() -> None:
    env = {**BASE, "DATABASE_URL": "sqlite:///x.db", "DB_PASSWORD": "pw", "DB_USER": "u"}
    assert ensure_database_url(env) is False and env["DATABASE_URL"] == "sqlite:///x.db"
    assert ensure_database_url({}) is False


def test_missing_credentials_stop_the_container() -> None:
    with pytest.raises(SystemExit, match="no credentials"):
        ensure_database_url(dict(BASE))
    with pytest.raises(SystemExit, match="JSON"):
        ensure_database_url({**BASE, "DB_SECRET": "not json"})


def test_task_ip_joins_allowed_hosts_once() -> None:
    task = {"Containers": [{"Networks": [{"IPv4Addresses": ["10.0.3.7"]}]}]}
    env = {"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x", "DJANGO_ALLOWED_HOSTS": "bridge.example.com"}
    assert add_task_ip_to_allowed_hosts(env, fetch_json=lambda url: task) == "10.0.3.7"
    assert env["DJANGO_ALLOWED_HOSTS"] == "bridge.example.com,10.0.3.7"
    add_task_ip_to_allowed_hosts(env, fetch_json=lambda url: task)
    assert env["DJANGO_ALLOWED_HOSTS"].count("10.0.3.7") == 1


def test_no_metadata_endpoint_outside_ecs_and_a_failing_one_is_not_fatal() -> None:
    assert add_task_ip_to_allowed_hosts({}) is None

    def broken(url: str) -> dict:
        raise OSError("unreachable")

    env = {"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x", "DJANGO_ALLOWED_HOSTS": "a"}
    assert add_task_ip_to_allowed_hosts(env, fetch_json=broken) is None
    assert env["DJANGO_ALLOWED_HOSTS"] == "a"


def test_database_url_without_sslmode() -> None:
    assert database_url_from_parts("h", "", "n", "u", "p") == "postgres://u:p@h:5432/n"
