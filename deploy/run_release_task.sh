#!/usr/bin/env bash
# Runs one command (migrate, collectstatic) once as a Fargate task from the release task definition with
# IMAGE, waits for it, and fails unless it exited 0.
#   CLUSTER=... FAMILY=... SUBNETS=a,b SG=sg-... IMAGE=repo:tag deploy/run_release_task.sh python manage.py migrate --noinput
# PASS_ENV="NAME ..." also hands those variables of the caller's environment to the command (container
# override), e.g. DJANGO_SUPERUSER_USERNAME/EMAIL/PASSWORD for `createsuperuser --noinput`. Overrides are
# visible in the task's description and CloudTrail: pass a one-time value and change it afterwards.
set -euo pipefail
: "${CLUSTER:?}" "${FAMILY:?}" "${SUBNETS:?}" "${SG:?}" "${IMAGE:?}"
[ "$#" -gt 0 ] || { echo "usage: $0 COMMAND..."; exit 2; }

aws ecs describe-task-definition --task-definition "$FAMILY" --query taskDefinition --output json \
  | jq --arg i "$IMAGE" '
      .containerDefinitions |= map(if .name == "release" then .image = $i else . end)
      | del(.taskDefinitionArn, .revision, .status, .requiresAttributes, .compatibilities,
            .registeredAt, .registeredBy, .deregisteredAt)' >"${RUNNER_TEMP:-/tmp}/taskdef-release.json"
taskdef="$(aws ecs register-task-definition --cli-input-json "file://${RUNNER_TEMP:-/tmp}/taskdef-release.json" \
  --query taskDefinition.taskDefinitionArn --output text)"
# Built one value at a time: jq would read a command word such as --noinput as its own option.
command="$(for word in "$@"; do jq -n --arg w "$word" '$w'; done | jq -cs .)"
environment="$(for name in ${PASS_ENV:-}; do
  : "${!name:?PASS_ENV names $name, which is not set}"
  jq -cn --arg n "$name" --arg v "${!name}" '{name: $n, value: $v}'
done | jq -cs .)"
overrides="$(jq -cn --argjson command "$command" --argjson env "$environment" \
  '{containerOverrides: [{name: "release", command: $command, environment: $env}]}')"
network="awsvpcConfiguration={subnets=[${SUBNETS}],securityGroups=[${SG}],assignPublicIp=DISABLED}"
task="$(aws ecs run-task --cluster "$CLUSTER" --launch-type FARGATE --task-definition "$taskdef" \
  --network-configuration "$network" --overrides "$overrides" --started-by "release-${GITHUB_RUN_ID:-manual}" \
  --query 'tasks[0].taskArn' --output text)"
echo "release task $task: $*"
aws ecs wait tasks-stopped --cluster "$CLUSTER" --tasks "$task"
code="$(aws ecs describe-tasks --cluster "$CLUSTER" --tasks "$task" \
  --query 'tasks[0].containers[?name==`release`].exitCode | [0]' --output text)"
echo "release task exited with $code"
[ "$code" = 0 ]
