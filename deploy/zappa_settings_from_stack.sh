#!/usr/bin/env bash
# Prints deploy/zappa_settings.json with the account-specific values of STAGE filled in: the subnets and
# security group (VPC) and the database endpoint and secret of the CDK webhook (VoiceOps-<stage>-Webhook), so
# the Zappa function reaches the RDS Proxy exactly as the CDK one does. Needs AWS credentials.
#   deploy/zappa_settings_from_stack.sh prod >deploy/.cache/zappa_settings.json
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
stage="${1:?usage: $0 STAGE}"
config="$(aws lambda get-function-configuration --function-name "voiceops-${stage}-webhook" --output json)"
jq --arg stage "$stage" --argjson fn "$config" '
  ($fn.Environment.Variables) as $env
  | if ($fn.VpcConfig.SubnetIds // [] | length) == 0 then error("the CDK webhook has no VPC configuration") else . end
  | .[$stage].vpc_config = {SubnetIds: $fn.VpcConfig.SubnetIds, SecurityGroupIds: $fn.VpcConfig.SecurityGroupIds}
  | .[$stage].environment_variables += {DB_HOST: $env.DB_HOST, DB_SECRET_ARN: $env.DB_SECRET_ARN}' \
  "$here/zappa_settings.json"
