"""Container entrypoint (and Lambda pre-handler): fill in what AWS hands over in pieces, then exec.

- DATABASE_URL: the app reads one URL; RDS keeps its generated credentials in Secrets Manager. ECS injects
  the secret's `username`/`password` fields as DB_USER/DB_PASSWORD, App Runner injects the whole secret JSON
  as DB_SECRET, and the Lambda gets DB_SECRET_ARN and fetches it at cold start. Host, port and name are plain
  environment (DB_HOST, DB_PORT, DB_NAME; DB_SSLMODE optional). An explicit DATABASE_URL always wins.
- DJANGO_ALLOWED_HOSTS: the ALB's health checks use the task's private IP as Host, which Django would
  reject; on ECS the task's own IP (from the task metadata endpoint) is appended.

Usage: `python /app/deploy/runtime/voiceops_entrypoint.py <command> [args...]` (the images' ENTRYPOINT).
Standard library only: it runs before anything else, in every image.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, MutableMapping

SecretFetcher = Callable[[str], str]
JsonFetcher = Callable[[str], dict]


def database_url_from_parts(host: str, port: str, name: str, user: str, password: str, sslmode: str = "") -> str:
    quote = urllib.parse.quote
    url = f"postgres://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port or '5432'}/{quote(name)}"
    return f"{url}?sslmode={quote(sslmode)}" if sslmode else url


def _fetch_secret_with_boto3(secret_arn: str) -> str:
    import boto3  # only the Lambda path needs it, and the Lambda runtime ships it

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]


def ensure_database_url(environ: MutableMapping[str, str], fetch_secret: SecretFetcher | None = None) -> bool:
    """Set DATABASE_URL from DB_* pieces when it is missing. Returns True when it set it."""
    if environ.get("DATABASE_URL") or not environ.get("DB_HOST"):
        return False
    user, password = environ.get("DB_USER", ""), environ.get("DB_PASSWORD", "")
    secret_json = environ.get("DB_SECRET", "")
    if not password and not secret_json and environ.get("DB_SECRET_ARN"):
        secret_json = (fetch_secret or _fetch_secret_with_boto3)(environ["DB_SECRET_ARN"])
    if not password and secret_json:
        try:
            secret = json.loads(secret_json)
        except json.JSONDecodeError:
            raise SystemExit("entrypoint: DB_SECRET is not the JSON of an RDS secret") from None
        user = user or secret.get("username", "")
        password = secret.get("password", "")
    if not user or not password:
        raise SystemExit(
            "entrypoint: DB_HOST is set but no credentials (DB_USER/DB_PASSWORD, DB_SECRET or DB_SECRET_ARN)"
        )
    environ["DATABASE_URL"] = database_url_from_parts(
        environ["DB_HOST"],
        environ.get("DB_PORT", "5432"),
        environ.get("DB_NAME", "voiceops"),
        user,
        password,
        environ.get("DB_SSLMODE", ""),
    )
    return True


def _fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - the ECS metadata endpoint
        return json.load(response)


def add_task_ip_to_allowed_hosts(
    environ: MutableMapping[str, str], fetch_json: JsonFetcher | None = None
) -> str | None:
    """On ECS, append the task's private IPv4 to DJANGO_ALLOWED_HOSTS. Returns the IP it added."""
    metadata_uri = environ.get("ECS_CONTAINER_METADATA_URI_V4", "")
    if not metadata_uri:
        return None
    try:
        task = (fetch_json or _fetch_json)(f"{metadata_uri}/task")
    except OSError as exc:
        sys.stderr.write(f"entrypoint: ECS task metadata unavailable ({exc}); ALB health checks may get 400\n")
        return None
    for container in task.get("Containers", []):
        for network in container.get("Networks", []):
            for address in network.get("IPv4Addresses", []):
                hosts = [h for h in environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h]
                if address not in hosts:
                    hosts.append(address)
                environ["DJANGO_ALLOWED_HOSTS"] = ",".join(hosts)
                return address
    return None


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: voiceops_entrypoint.py COMMAND [ARGS...]")
    ensure_database_url(os.environ)
    add_task_ip_to_allowed_hosts(os.environ)
    os.execvp(argv[0], argv)  # noqa: S606 - replaces this process with the image's command


if __name__ == "__main__":
    main(sys.argv[1:])
