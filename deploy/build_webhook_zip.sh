#!/usr/bin/env bash
# Builds the webhook Lambda zip for the python3.13 x86_64 runtime: the slim requirements as manylinux wheels
# (no compiler, works from any machine that reaches PyPI) plus the app code the webhook slice imports.
#   deploy/build_webhook_zip.sh [OUTPUT.zip]     (default deploy/.cache/webhook.zip)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
out="$(realpath -m "${1:-$here/.cache/webhook.zip}")"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

python3 -m pip install --quiet --disable-pip-version-check --no-compile \
  --platform manylinux2014_x86_64 --python-version 3.13 --implementation cp --only-binary=:all: \
  --target "$stage" -r "$repo/requirements/webhook.txt"
# boto3/botocore are in the Lambda runtime already; shipping them only slows cold starts.
rm -rf "$stage"/boto3* "$stage"/botocore* "$stage"/s3transfer* "$stage"/bin
(cd "$repo" && cp -r voiceops calls lambda_webhook "$stage"/)
cp "$here/runtime/voiceops_entrypoint.py" "$here/runtime/lambda_entry.py" "$stage"/
find "$stage" -name '__pycache__' -prune -exec rm -rf {} +
mkdir -p "$(dirname "$out")"
rm -f "$out"
(cd "$stage" && python3 -m zipfile -c "$out" .)
echo "webhook zip: $out ($(du -h "$out" | cut -f1))"
