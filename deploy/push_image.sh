#!/usr/bin/env bash
# Builds DOCKERFILE and pushes it as REPOSITORY_URI:TAG, unless that tag is already in ECR. Tags are commit
# SHAs and the repositories' tags are immutable, so a second push of the same tag fails with
# ImageTagAlreadyExistsException: a re-run, or the documented rollback (deploy an earlier commit again), must
# reuse the image the first run pushed.
#   REPOSITORY_URI=<account>.dkr.ecr.<region>.amazonaws.com/voiceops-prod/web TAG=<sha> \
#     DOCKERFILE=deploy/Dockerfile.web deploy/push_image.sh
set -euo pipefail
: "${REPOSITORY_URI:?}" "${TAG:?}" "${DOCKERFILE:?}"
repository="${REPOSITORY_URI#*/}"
registry="${REPOSITORY_URI%%.*}"
errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT

if digest="$(aws ecr describe-images --registry-id "$registry" --repository-name "$repository" \
  --image-ids imageTag="$TAG" --query 'imageDetails[0].imageDigest' --output text 2>"$errors")"; then
  echo "$repository:$TAG is already in ECR ($digest): not building it again"
  exit 0
fi
# Only "no such image" means build; anything else (no permission, no repository) is a real error.
grep -q ImageNotFoundException "$errors" || { cat "$errors" >&2; exit 1; }
docker buildx build --file "$DOCKERFILE" --tag "$REPOSITORY_URI:$TAG" --provenance=false --push .
echo "pushed $repository:$TAG"
