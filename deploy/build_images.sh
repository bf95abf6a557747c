#!/usr/bin/env bash
# Builds the web, bridge and webhook images without a Docker daemon or a registry, then starts the web and
# bridge images and asks each for /healthz on loopback. This is how CI proves the Dockerfiles work.
#
#   deploy/build_images.sh            # everything (base rootfs cached under deploy/.cache/)
#   SKIP_RUN=1 deploy/build_images.sh # build only
#
# The official python image cannot be pulled here, so a stand-in with the same name and the same paths is
# made once: a minbase Debian bookworm rootfs (debootstrap) with Debian's python3 linked into /usr/local/bin.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="$here/.cache"
base_image="docker.io/library/python:3.11-slim-bookworm"
rootfs_tar="$cache/python-3.11-slim-bookworm-standin.tar"
storage=(--storage-driver vfs)
mirror="${DEBIAN_MIRROR:-}"

skip() { echo "build_images: SKIPPED: $*"; exit 0; }

for tool in buildah podman debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed (apt-get install -y buildah podman debootstrap)"
done
[ "$(id -u)" = 0 ] || skip "debootstrap and chroot isolation need root"

if [ -z "$mirror" ]; then
  # The Debian mirror this machine's apt already uses (deb822 or one-line format).
  mirror="$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
            | grep -v security | head -n1 || true)"
  [ -n "$mirror" ] || mirror="$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)"
  [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
fi

mkdir -p "$cache"
start=$(date +%s)

make_standin_rootfs() {
  local rootfs="$cache/rootfs"
  rm -rf "$rootfs"
  echo "build_images: debootstrap minbase bookworm from $mirror (cached afterwards in $rootfs_tar)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 30 "$cache/debootstrap.log"; echo "build_images: debootstrap failed"; exit 1; }
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
echo "build_images: stand-in rootfs ready after $(( $(date +%s) - start ))s"

buildah_() { buildah "${storage[@]}" "$@"; }

if ! buildah_ inspect --type image "$base_image" >/dev/null 2>&1; then
  # podman import: a stand-in under the official image's name, so the Dockerfiles stay unchanged.
  podman "${storage[@]}" import --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' "$rootfs_tar" "$base_image" >/dev/null
fi
echo "build_images: base image $base_image ready after $(( $(date +%s) - start ))s"

cd "$repo"
for kind in ${IMAGES:-web bridge webhook}; do
  t0=$(date +%s)
  buildah_ bud --isolation chroot --pull=never --layers=false --quiet \
    -f "deploy/Dockerfile.$kind" -t "localhost/voiceops-$kind:verify" . >"$cache/build-$kind.log" 2>&1 \
    || { tail -n 40 "$cache/build-$kind.log"; echo "build_images: FAILED to build $kind"; exit 1; }
  echo "build_images: built voiceops-$kind in $(( $(date +%s) - t0 ))s"
done

[ "${SKIP_RUN:-0}" = "1" ] && { echo "build_images: run step skipped (SKIP_RUN=1)"; exit 0; }

# Start a container from an image with its own command line and probe /healthz on loopback.
# (chroot isolation shares this machine's network namespace, so the port is 127.0.0.1:$port here.)
pids=()
containers=()
cleanup() {
  local pid ctr
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for ctr in "${containers[@]}"; do buildah_ rm "$ctr" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

probe() {  # probe KIND PORT COMMAND...
  local kind="$1" port="$2"
  shift 2
  local ctr
  ctr="$(buildah_ from --pull-never "localhost/voiceops-$kind:verify")"
  containers+=("$ctr")
  buildah_ run --isolation chroot \
    --env PORT="$port" --env DJANGO_DEBUG=0 --env DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost \
    --env DJANGO_SECRET_KEY="verify-$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 60)" \
    --env TWILIO_AUTH_TOKEN=verify-not-a-real-token --env DATABASE_URL=sqlite:////tmp/verify.sqlite3 \
    "$ctr" -- python /app/deploy/runtime/voiceops_entrypoint.py "$@" >"$cache/run-$kind.log" 2>&1 &
  pids+=("$!")
  local i
  for i in $(seq 1 60); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >"$cache/healthz-$kind.json" 2>/dev/null; then
      echo "build_images: voiceops-$kind answered /healthz: $(cat "$cache/healthz-$kind.json")"
      return 0
    fi
    sleep 1
  done
  tail -n 40 "$cache/run-$kind.log"
  echo "build_images: voiceops-$kind did not answer /healthz within 60s"
  return 1
}

probe web 18181 sh -c 'exec daphne --bind 127.0.0.1 --port "$PORT" --proxy-headers voiceops.asgi:application'
probe bridge 18182 python manage.py runbridge --host 127.0.0.1
echo "build_images: all images built and started in $(( $(date +%s) - start ))s"
