"""collectstatic with the production storage (S3, moto) writes hashed names, and templates link to them."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: the settings module picks the storage from the environment at import time.
COLLECT = r"""
import json, os
import boto3, django
from moto import mock_aws

with mock_aws():
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = os.environ["AWS_STORAGE_BUCKET_NAME"]
    s3.create_bucket(Bucket=bucket)
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.templatetags.static import static

    call_command("collectstatic", "--noinput", verbosity=0)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    print(json.dumps({"backend": settings.STORAGES["staticfiles"]["BACKEND"], "keys": keys,
                      "url": static("admin/css/base.css")}))
"""


def test_collectstatic_on_s3_uploads_hashed_names_and_static_links_to_them(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "voiceops.settings",
        "VOICEOPS_COMPONENT": "web",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "admin.example.com",
        "TWILIO_AUTH_TOKEN": "x",
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "AWS_STORAGE_BUCKET_NAME": "voiceops-test-static",
        "AWS_S3_CUSTOM_DOMAIN": "d111111abcdef8.cloudfront.net",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [sys.executable, "-c", COLLECT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "voiceops.storage.ManifestS3Storage"
    match = re.fullmatch(
        r"https://d111111abcdef8\.cloudfront\.net/static/admin/css/base\.([0-9a-f]{12})\.css", result["url"]
    )
    assert match, result["url"]
    keys = set(result["keys"])
    assert f"static/admin/css/base.{match.group(1)}.css" in keys
    assert "static/staticfiles.json" in keys
