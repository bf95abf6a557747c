#!/usr/bin/env bash
# Registers a new revision of an ECS service's task definition with IMAGE in CONTAINER, updates the service
# and waits until it is stable (the deployment circuit breaker rolls back on failure).
#   CLUSTER=... SERVICE=... CONTAINER=bridge IMAGE=repo:tag deploy/roll_ecs_service.sh
set -euo pipefail
: "${CLUSTER:?}" "${SERVICE:?}" "${CONTAINER:?}" "${IMAGE:?}"

current="$(aws ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" \
  --query 'services[0].taskDefinition' --output text)"
aws ecs describe-task-definition --task-definition "$current" --query taskDefinition --output json \
  | jq --arg c "$CONTAINER" --arg i "$IMAGE" '
      .containerDefinitions |= map(if .name == $c then .image = $i else . end)
      | del(.taskDefinitionArn, .revision, .status, .requiresAttributes, .compatibilities,
            .registeredAt, .registeredBy, .deregisteredAt)' >"${RUNNER_TEMP:-/tmp}/taskdef-$SERVICE.json"
next="$(aws ecs register-task-definition --cli-input-json "file://${RUNNER_TEMP:-/tmp}/taskdef-$SERVICE.json" \
  --query taskDefinition.taskDefinitionArn --output text)"
aws ecs update-service --cluster "$CLUSTER" --service "$SERVICE" --task-definition "$next" >/dev/null
echo "rolling $SERVICE to $next"
# Old bridge tasks drain their calls first (deregistration delay, then SIGTERM + DRAIN_TIMEOUT_S).
aws ecs wait services-stable --cluster "$CLUSTER" --services "$SERVICE"
echo "$SERVICE is stable on $next"
