#!/usr/bin/env bash
# Waits until an ECS service's rolling deployment to TASK_DEFINITION has completed, printing progress, and
# fails when ECS rolled it back (deployment circuit breaker) or it does not finish within TIMEOUT_S.
#   CLUSTER=... SERVICE=... TASK_DEFINITION=<arn from roll_ecs_service.sh> TIMEOUT_S=4500 \
#     [POLL_INTERVAL_S=30] deploy/wait_ecs_deployment.sh
#
# Done means all of: the service's only deployment runs TASK_DEFINITION, its rolloutState is COMPLETED, and
# runningCount == desiredCount. `aws ecs wait services-stable` checks only the last two, so it also passes
# after a rollback (the rollback deployment completes too), and it gives up after 10 minutes.
#
# The bridge: ECS starts the new tasks, waits for them to pass the ALB health check, then deregisters the old
# ones. A deregistering target gets no new connections, and its established WebSockets (live calls) go on
# until they end or the target group's deregistration delay (3600 s) runs out; only then does ECS send
# SIGTERM. So the bridge's bound is the longest call plus the time to start and stop tasks.
set -euo pipefail
: "${CLUSTER:?}" "${SERVICE:?}" "${TASK_DEFINITION:?}" "${TIMEOUT_S:?}"
interval="${POLL_INTERVAL_S:-30}"
started=$SECONDS

# One verdict per poll: "done", "failed <why>" or "wait <progress>".
verdict_of() {
  jq -r --arg want "$TASK_DEFINITION" '
    .deployments as $all
    | ($all | map(select(.taskDefinition == $want)) | first) as $ours
    | ($all | map(select(.status == "PRIMARY")) | first) as $primary
    | ($all | map(select(.taskDefinition != $want))) as $old
    | if $ours == null then
        "failed no deployment of the new revision is left: the service runs \($primary.taskDefinition // "nothing") (rolled back or replaced)"
      elif $ours.rolloutState == "FAILED" then
        "failed ECS rolled the deployment back: \($ours.rolloutStateReason // "no reason given")"
      elif $primary.taskDefinition != $want then
        "failed the primary deployment runs \($primary.taskDefinition), not the new revision (rolled back or replaced)"
      elif $ours.rolloutState == "COMPLETED" and ($all | length) == 1
           and $ours.runningCount == $ours.desiredCount then
        "done"
      else
        "wait new: \($ours.runningCount)/\($ours.desiredCount) running, \($ours.pendingCount // 0) pending, "
        + "rollout \($ours.rolloutState // "unknown")"
        + (if ($old | length) > 0 then
             "; old: \($old | map(.runningCount) | add) task(s) still draining their calls"
           else "" end)
      end'
}

minutes() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

while :; do
  elapsed=$((SECONDS - started))
  service="$(aws ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" --query 'services[0]' --output json)"
  verdict="$(verdict_of <<<"$service")"
  case "$verdict" in
    done)
      echo "$SERVICE: deployment of $TASK_DEFINITION completed after $(minutes "$elapsed")"
      exit 0
      ;;
    failed*)
      echo "$SERVICE: FAILED after $(minutes "$elapsed"): ${verdict#failed }" >&2
      exit 1
      ;;
  esac
  echo "$SERVICE: $(minutes "$elapsed") of $(minutes "$TIMEOUT_S"): ${verdict#wait }"
  if [ "$elapsed" -ge "$TIMEOUT_S" ]; then
    echo "$SERVICE: the deployment did not finish within $(minutes "$TIMEOUT_S"); ECS carries on with it," \
      "but this release is not recorded (see docs/deploy.md, Releases)" >&2
    exit 1
  fi
  sleep "$interval"
done
