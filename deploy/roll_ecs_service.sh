#!/usr/bin/env bash
# Registers a new revision of an ECS service's task definition with IMAGE in CONTAINER and starts a rolling
# deployment to it. It does not wait: deploy/wait_ecs_deployment.sh does, with a bound that suits the service
# (the bridge's old tasks keep their live calls until those end). The new revision's ARN goes to stdout's
# last line and, in GitHub Actions, to the step output `task_definition`.
#   CLUSTER=... SERVICE=... CONTAINER=bridge IMAGE=repo:tag deploy/roll_ecs_service.sh
set -euo pipefail
: "${CLUSTER:?}" "${SERVICE:?}" "${CONTAINER:?}" "${IMAGE:?}"
taskdef_json="$(mktemp)"
trap 'rm -f "$taskdef_json"' EXIT

current="$(aws ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" \
  --query 'services[0].taskDefinition' --output text)"
aws ecs describe-task-definition --task-definition "$current" --query taskDefinition --output json \
  | jq --arg c "$CONTAINER" --arg i "$IMAGE" '
      .containerDefinitions |= map(if .name == $c then .image = $i else . end)
      | del(.taskDefinitionArn, .revision, .status, .requiresAttributes, .compatibilities,
            .registeredAt, .registeredBy, .deregisteredAt)' >"$taskdef_json"
next="$(aws ecs register-task-definition --cli-input-json "file://$taskdef_json" \
  --query taskDefinition.taskDefinitionArn --output text)"
aws ecs update-service --cluster "$CLUSTER" --service "$SERVICE" --task-definition "$next" >/dev/null
echo "task_definition=$next" >>"${GITHUB_OUTPUT:-/dev/null}"
echo "started rolling $SERVICE from $current to"
echo "$next"
