"""Load /voiceops/<stage>/<NAME> parameters into the environment at cold start.

Set VOICEOPS_SSM_PREFIX (e.g. /voiceops/prod/) on the function; every SecureString and String parameter under
it becomes an environment variable of the same NAME, unless the environment already sets it. Off when unset,
so local runs and tests never touch AWS.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def load_into_environ(prefix: str | None = None, client: object | None = None) -> list[str]:
    prefix = prefix if prefix is not None else os.environ.get("VOICEOPS_SSM_PREFIX", "")
    if not prefix:
        return []
    if not prefix.endswith("/"):
        prefix += "/"
    if client is None:
        import boto3

        client = boto3.client("ssm")
    loaded: list[str] = []
    paginator = client.get_paginator("get_parameters_by_path")  # type: ignore[attr-defined]
    for page in paginator.paginate(Path=prefix, WithDecryption=True, Recursive=False):
        for param in page.get("Parameters", []):
            name = param["Name"][len(prefix):]
            if name and name not in os.environ:
                os.environ[name] = param["Value"]
                loaded.append(name)
    log.info("loaded %d settings from SSM %s", len(loaded), prefix)  # names only, never values
    return sorted(loaded)
