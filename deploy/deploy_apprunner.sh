#!/usr/bin/env bash
# Deploys IMAGE to the App Runner web service and waits for that operation; fails when App Runner rolled it
# back. App Runner's service status returns to RUNNING after a rollback too, so the operation's own status
# (ListOperations: SUCCEEDED, or FAILED / ROLLBACK_SUCCEEDED / ROLLBACK_FAILED) is what tells.
#   SERVICE_ARN=... IMAGE=repo:tag [TIMEOUT_S=1200] [POLL_INTERVAL_S=10] deploy/deploy_apprunner.sh
set -euo pipefail
: "${SERVICE_ARN:?}" "${IMAGE:?}"
timeout_s="${TIMEOUT_S:-1200}"
interval="${POLL_INTERVAL_S:-10}"

# UpdateService replaces the whole source configuration: send the current one with only the image changed,
# so the access role, port, environment and secrets stay as CDK set them.
source_configuration="$(aws apprunner describe-service --service-arn "$SERVICE_ARN" \
  --query Service.SourceConfiguration --output json | jq -c --arg i "$IMAGE" '.ImageRepository.ImageIdentifier = $i')"
operation="$(aws apprunner update-service --service-arn "$SERVICE_ARN" \
  --source-configuration "$source_configuration" --query OperationId --output text)"
echo "App Runner operation $operation: deploying $IMAGE"

started=$SECONDS
while :; do
  status="$(aws apprunner list-operations --service-arn "$SERVICE_ARN" \
    --query "OperationSummaryList[?Id=='$operation'].Status | [0]" --output text)"
  elapsed=$((SECONDS - started))
  case "$status" in
    SUCCEEDED)
      running="$(aws apprunner describe-service --service-arn "$SERVICE_ARN" \
        --query Service.SourceConfiguration.ImageRepository.ImageIdentifier --output text)"
      [ "$running" = "$IMAGE" ] || { echo "App Runner runs $running, not $IMAGE" >&2; exit 1; }
      echo "App Runner operation $operation succeeded after ${elapsed}s"
      exit 0
      ;;
    PENDING | IN_PROGRESS) echo "App Runner operation $operation: $status (${elapsed}s)" ;;
    *)
      echo "App Runner operation $operation ended $status: the release is not recorded" >&2
      exit 1
      ;;
  esac
  [ "$elapsed" -lt "$timeout_s" ] || { echo "App Runner operation $operation not done in ${timeout_s}s" >&2; exit 1; }
  sleep "$interval"
done
