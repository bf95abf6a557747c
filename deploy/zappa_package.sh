#!/usr/bin/env bash
# The Zappa alternative for the webhook slice: build the Lambda package offline (no AWS credentials).
#   deploy/zappa_package.sh [STAGE]    -> deploy/.cache/zappa-<stage>.zip
#   ZAPPA_SETTINGS=deploy/.cache/zappa_settings.json deploy/zappa_package.sh prod   (filled by
#   deploy/zappa_settings_from_stack.sh: VPC and database of the stage)
# Zappa packages the active virtualenv, so it gets its own, on the runtime's Python (3.13): the webhook
# requirements + zappa.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
stage="${1:-dev}"
settings="$(realpath "${ZAPPA_SETTINGS:-$here/zappa_settings.json}")"
python="${PYTHON:-python3.13}"
venv="$here/.cache/zappa-venv-3.13"
[ -x "$venv/bin/zappa" ] || {
  command -v "$python" >/dev/null || { echo "zappa_package: $python is missing (the runtime is python3.13)" >&2; exit 1; }
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check zappa==0.63.0 -r "$repo/requirements/webhook.txt"
}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Zappa reads zappa_settings.json from the working directory and packages it; the app modules and the two
# runtime shims sit at the package root so `zappa_wsgi.application` imports.
cp -r "$repo/voiceops" "$repo/calls" "$repo/lambda_webhook" "$repo/manage.py" "$work/"
cp "$here/runtime/voiceops_entrypoint.py" "$here/runtime/zappa_wsgi.py" "$work/"
cp "$settings" "$work/zappa_settings.json"
cd "$work"
# No credentials and no network to AWS: a region is all boto3 needs to build the package.
AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
  "$venv/bin/zappa" package "$stage" -o "$here/.cache/zappa-$stage.zip"
echo "zappa package: $here/.cache/zappa-$stage.zip"
