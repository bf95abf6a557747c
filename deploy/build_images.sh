#!/usr/bin/env bash
# Builds the web, bridge and webhook images without a Docker daemon or a registry, then proves each one works:
#   - config: non-root user, a HEALTHCHECK (web, bridge), no secret-looking names in the baked environment;
#   - web, bridge: started with their own ENTRYPOINT + CMD in production mode on a random $PORT, they answer
#     /healthz (the bridge also /readyz) on loopback, the image's HEALTHCHECK command passes, and SIGTERM
#     ends them cleanly (exit 0) within STOP_TIMEOUT_S;
#   - webhook: inside the image, the Lambda handler gets API Gateway v2 events for /twilio/voice: unsigned → 403,
#     signed → 200 TwiML and a Call row.
#
#   deploy/build_images.sh            # everything (base rootfs cached under deploy/.cache/)
#   SKIP_RUN=1 deploy/build_images.sh # build and check the config only
#   IMAGES="web bridge" deploy/build_images.sh
#
# Needs root and buildah, podman, debootstrap (installed with apt-get when missing and apt-get exists).
# The official python image cannot be pulled here, so a stand-in with the same name and the same paths is made
# once: a minbase Debian bookworm rootfs (debootstrap) with Debian's python3 linked into /usr/local/bin.
# Containers run with --isolation chroot, which shares this machine's network: web and bridge listen on
# 0.0.0.0:<random port> for the few seconds of the check, exactly as their CMD does in ECS.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="$here/.cache"
base_image="docker.io/library/python:3.11-slim-bookworm"
rootfs_tar="$cache/python-3.11-slim-bookworm-standin.tar"
mirror="${DEBIAN_MIRROR:-}"
START_TIMEOUT_S="${START_TIMEOUT_S:-90}"
STOP_TIMEOUT_S="${STOP_TIMEOUT_S:-20}"
# Call buildah directly (never through a shell function) so `&` + $! is buildah's own pid, which cleanup kills.
B=(buildah --storage-driver vfs)

skip() { echo "build_images: SKIPPED: $*"; exit 0; }
fail() { echo "build_images: FAILED: $*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - start ))s"; }

[ "$(id -u)" = 0 ] || skip "debootstrap and chroot isolation need root"
mkdir -p "$cache"
missing=()
for tool in buildah podman debootstrap curl python3 flock; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || skip "missing ${missing[*]} and no apt-get to install them"
  echo "build_images: installing buildah podman debootstrap (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq buildah podman debootstrap curl python3 util-linux; } \
    >"$cache/apt.log" 2>&1 || { tail -n 20 "$cache/apt.log"; fail "apt-get install"; }
fi

# One image job at a time per machine: parallel CI runs share the buildah store and the container names.
exec 9>"$cache/images.lock"
flock -w 1800 9 || fail "another build_images.sh held $cache/images.lock for 30 minutes"
start=$(date +%s)

if [ -z "$mirror" ]; then
  # The Debian mirror this machine's apt already uses (deb822 or one-line format).
  mirror="$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
            | grep -v security | head -n1 || true)"
  [ -n "$mirror" ] || mirror="$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)"
  [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
fi

make_standin_rootfs() {
  local rootfs="$cache/rootfs"
  rm -rf "$rootfs"
  echo "build_images: debootstrap minbase bookworm from $mirror (cached afterwards in $rootfs_tar)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 30 "$cache/debootstrap.log"; fail "debootstrap"; }
  # Same paths as the official image: python, python3 and pip live in /usr/local/bin.
  for name in python python3 python3.11; do ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/$name"; done
  ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  # Debian marks its python as externally managed; the official image does not.
  rm -f "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED
  # Stand-in only: trust this machine's CA bundle so pip inside the build reaches the package index the same
  # way the host does. The real base image is never touched.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$rootfs"
}

[ -s "$rootfs_tar" ] || make_standin_rootfs
echo "build_images: stand-in rootfs ready after $(elapsed)"

if ! "${B[@]}" inspect --type image "$base_image" >/dev/null 2>&1; then
  # podman import: a stand-in under the official image's name, so the Dockerfiles stay unchanged.
  podman --storage-driver vfs import --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' "$rootfs_tar" "$base_image" >/dev/null
fi
echo "build_images: base image $base_image ready after $(elapsed)"

pids=()
containers=()
cleanup() {
  local pid ctr
  # buildah run ends its container process when it is itself terminated.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ctr in "${containers[@]}"; do "${B[@]}" rm "$ctr" >/dev/null 2>&1 || true; done
  # Images of earlier runs are full copies under vfs: drop the untagged ones so the store stays small.
  "${B[@]}" rmi --prune >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- build ------------------------------------------------------------------------------------------------
cd "$repo"
read -ra kinds <<<"${IMAGES:-web bridge webhook}"
for kind in "${kinds[@]}"; do
  t0=$(date +%s)
  # --format docker: the OCI format has no HEALTHCHECK and buildah would silently drop it.
  "${B[@]}" bud --format docker --isolation chroot --pull=never --layers=false --quiet \
    --ignorefile "deploy/Dockerfile.$kind.dockerignore" \
    -f "deploy/Dockerfile.$kind" -t "localhost/voiceops-$kind:verify" . >"$cache/build-$kind.log" 2>&1 \
    || { tail -n 40 "$cache/build-$kind.log"; fail "build $kind (log: $cache/build-$kind.log)"; }
  echo "build_images: built voiceops-$kind in $(( $(date +%s) - t0 ))s"
done

# --- image config -----------------------------------------------------------------------------------------
check_config() {  # check_config KIND: prints the command line (ENTRYPOINT + CMD), NUL-separated
  "${B[@]}" inspect --type image "localhost/voiceops-$1:verify" | python3 -c '
import json, re, sys
kind, image = sys.argv[1], json.load(sys.stdin)
config = image["Docker"]["config"]
problems = []
if config.get("User", "") in ("", "0", "root", "0:0", "root:root"):
    problems.append("runs as root")
secretish = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE|CREDENTIAL", re.I)
baked = [e.split("=", 1)[0] for e in config.get("Env") or [] if secretish.search(e.split("=", 1)[0])]
if baked:
    problems.append(f"secret-looking environment baked in: {baked}")
health = (config.get("Healthcheck") or {}).get("Test") or []
if kind != "webhook" and health[:1] not in (["CMD"], ["CMD-SHELL"]):
    problems.append("no HEALTHCHECK")
if kind != "webhook" and not any(e.startswith("PORT=") for e in config.get("Env") or []):
    problems.append("no PORT default")
if problems:
    sys.exit(f"voiceops-{kind}: " + "; ".join(problems))
user, check = config["User"], health[0] if health else "none"
print(f"build_images: voiceops-{kind} config: user {user}, healthcheck {check}", file=sys.stderr)
sys.stdout.write("\0".join((config.get("Entrypoint") or []) + (config.get("Cmd") or [])))
' "$1"
}

healthcheck_command() {  # healthcheck_command KIND: the HEALTHCHECK test as a command line, NUL-separated
  "${B[@]}" inspect --type image "localhost/voiceops-$1:verify" | python3 -c '
import json, sys
test = json.load(sys.stdin)["Docker"]["config"]["Healthcheck"]["Test"]
sys.stdout.write("\0".join(test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]))
'
}

for kind in "${kinds[@]}"; do
  check_config "$kind" >/dev/null || fail "image config of voiceops-$kind"
done

[ "${SKIP_RUN:-0}" = "1" ] && { echo "build_images: run step skipped (SKIP_RUN=1); $(elapsed) in all"; exit 0; }

# --- run --------------------------------------------------------------------------------------------------

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret_key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(64))')"  # throwaway, never stored
# Production mode, as ECS runs it, with throwaway values: a per-run key, a dummy Twilio token, SQLite in /tmp.
prod_env=(
  --env DJANGO_DEBUG=0 --env "DJANGO_SECRET_KEY=$secret_key" --env DJANGO_ALLOWED_HOSTS=127.0.0.1
  --env DJANGO_SECURE_SSL_REDIRECT=0 --env TWILIO_AUTH_TOKEN=x --env DATABASE_URL=sqlite:////tmp/verify.sqlite3
)

new_container() {  # new_container KIND: sets $ctr to a fresh working container of the image, kept for cleanup
  # (not echoed: a command substitution is a subshell, and `containers` would forget it)
  ctr="voiceops-$1-verify-$$"
  containers+=("$ctr")
  "${B[@]}" from --pull-never --name "$ctr" "localhost/voiceops-$1:verify" >/dev/null
}

innermost_pid() {  # innermost_pid PID: the last descendant (buildah run → chroot runtime → exec → command)
  local pid="$1" child
  while child="$(pgrep -P "$pid" | head -n1)" && [ -n "$child" ]; do pid="$child"; done
  echo "$pid"
}

expect_http() {  # expect_http URL STATUS OUTFILE: one request; true when the status matches
  local code
  code="$(curl -sS -o "$3" -w '%{http_code}' --max-time 5 "$1" 2>/dev/null || true)"
  [ "$code" = "$2" ]
}

serve_and_probe() {  # serve_and_probe KIND PATH...: start the image's own command, probe each PATH, stop it
  local kind="$1"
  shift
  local port ctr pid log="$cache/run-$kind.log" t0 i
  port="$(free_port)"
  new_container "$kind"
  local -a command health
  mapfile -d '' -t command < <(check_config "$kind" 2>/dev/null)
  mapfile -d '' -t health < <(healthcheck_command "$kind")
  t0=$(date +%s)
  "${B[@]}" run --isolation chroot --env "PORT=$port" "${prod_env[@]}" "$ctr" -- "${command[@]}" >"$log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for ((i = 0; i < START_TIMEOUT_S * 2; i++)); do
    expect_http "http://127.0.0.1:$port/healthz" 200 "$cache/healthz-$kind.json" && break
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$log"; fail "voiceops-$kind exited before answering /healthz"; }
    sleep 0.5
  done
  [ "$i" -lt $((START_TIMEOUT_S * 2)) ] || { tail -n 40 "$log"; fail "voiceops-$kind: no /healthz within ${START_TIMEOUT_S}s"; }
  echo "build_images: voiceops-$kind ($(printf '%q ' "${command[@]}")) on PORT=$port answered /healthz" \
       "after $(( $(date +%s) - t0 ))s: $(cat "$cache/healthz-$kind.json")"
  local path
  for path in "$@"; do
    expect_http "http://127.0.0.1:$port$path" 200 "$cache/probe-$kind.out" \
      || { cat "$cache/probe-$kind.out"; tail -n 20 "$log"; fail "voiceops-$kind: GET $path is not 200"; }
    echo "build_images: voiceops-$kind answered $path: $(cat "$cache/probe-$kind.out")"
  done
  # The image's own HEALTHCHECK, run beside the server in the same image with the same PORT.
  "${B[@]}" run --isolation chroot --env "PORT=$port" "$ctr" -- "${health[@]}" >"$cache/healthcheck-$kind.log" 2>&1 \
    || { cat "$cache/healthcheck-$kind.log"; fail "voiceops-$kind: its HEALTHCHECK command fails"; }
  echo "build_images: voiceops-$kind HEALTHCHECK command passes"
  # STOPSIGNAL SIGTERM to the server process itself (ECS signals the container's PID 1, which is this process).
  local app_pid rc=0
  app_pid="$(innermost_pid "$pid")"
  kill -TERM "$app_pid"
  for ((i = 0; i < STOP_TIMEOUT_S * 2; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && { tail -n 20 "$log"; fail "voiceops-$kind still running ${STOP_TIMEOUT_S}s after SIGTERM"; }
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || { tail -n 20 "$log"; fail "voiceops-$kind exited with status $rc after SIGTERM"; }
  echo "build_images: voiceops-$kind stopped cleanly on SIGTERM"
}

webhook_handler_check() {
  local ctr
  new_container webhook
  # VOICEOPS_SSM_PREFIX stays unset: no AWS here. API Gateway sends x-forwarded-proto https, so the default
  # SSL redirect stays on. The handler is the one the image's CMD names (lambda_entry.handler).
  # shellcheck disable=SC2016  # the script is Python; "$default" is API Gateway's stage name, not a variable
  "${B[@]}" run --isolation chroot --env DJANGO_DEBUG=0 --env "DJANGO_SECRET_KEY=$secret_key" \
    --env DJANGO_ALLOWED_HOSTS=127.0.0.1 --env TWILIO_AUTH_TOKEN=x \
    --env DATABASE_URL=sqlite:////tmp/webhook.sqlite3 "$ctr" -- python -c '
import base64, json, urllib.parse

import awslambdaric  # noqa: F401  the ENTRYPOINT must be importable
import lambda_webhook.handler
from lambda_entry import handler

assert handler is lambda_webhook.handler.handler, "lambda_entry.handler is not the app handler"

from django.conf import settings
from django.core.management import call_command
from twilio.request_validator import RequestValidator

from calls.models import Call

call_command("migrate", verbosity=0)

def event(params, headers):
    body = base64.b64encode(urllib.parse.urlencode(params).encode()).decode()
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/twilio/voice", "rawQueryString": "",
        "headers": {"host": "127.0.0.1", "content-type": "application/x-www-form-urlencoded",
                    "x-forwarded-proto": "https", "x-forwarded-port": "443", "x-forwarded-for": "203.0.113.7",
                    "user-agent": "TwilioProxy/1.1", **headers},
        "requestContext": {"accountId": "123456789012", "apiId": "verify", "domainName": "127.0.0.1",
                           "domainPrefix": "verify", "requestId": "verify-1", "routeKey": "$default",
                           "stage": "$default", "time": "24/Nov/2026:00:00:00 +0000", "timeEpoch": 0,
                           "http": {"method": "POST", "path": "/twilio/voice", "protocol": "HTTP/1.1",
                                    "sourceIp": "203.0.113.7", "userAgent": "TwilioProxy/1.1"}},
        "body": body, "isBase64Encoded": True,
    }

params = {"CallSid": "CA" + "0" * 31 + "1", "AccountSid": "AC" + "0" * 32, "From": "+15005550006",
          "To": "+15005550001", "CallStatus": "ringing", "Direction": "inbound"}
unsigned = handler(event(params, {}), None)
assert unsigned["statusCode"] == 403, unsigned
assert not Call.objects.exists(), "an unsigned request left a Call row"
print("build_images: voiceops-webhook handler: unsigned /twilio/voice -> 403")

url = settings.PUBLIC_WEBHOOK_BASE_URL + "/twilio/voice"
signature = RequestValidator("x").compute_signature(url, params)
signed = handler(event(params, {"x-twilio-signature": signature}), None)
body = base64.b64decode(signed["body"]).decode() if signed.get("isBase64Encoded") else signed["body"]
assert signed["statusCode"] == 200, signed
assert "<Response>" in body and "<Hangup" in body, body  # no agent config for this number: apology, hang up
assert Call.objects.filter(twilio_call_sid=params["CallSid"]).count() == 1
print("build_images: voiceops-webhook handler: signed /twilio/voice -> 200 TwiML, Call row recorded")
' >"$cache/run-webhook.log" 2>&1 || { tail -n 40 "$cache/run-webhook.log"; fail "voiceops-webhook handler check"; }
  grep '^build_images:' "$cache/run-webhook.log"
}

for kind in "${kinds[@]}"; do
  case "$kind" in
    web) serve_and_probe web ;;
    bridge) serve_and_probe bridge /readyz ;;
    webhook) webhook_handler_check ;;
  esac
done
echo "build_images: all images built, checked and started in $(elapsed)"
