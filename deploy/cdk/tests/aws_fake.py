"""A moto server on loopback with a thin fake in front of it for the AWS behaviours moto lacks.

The release scripts (the AWS CLI, run as subprocesses) talk to `FakeAws.endpoint`: a small HTTP proxy that
records every call as the IAM action and resource it needs, forwards it to moto, and rewrites the few answers
where moto does not model AWS:

- ECS rolling deployments. moto keeps one deployment per service forever. `EcsRollouts` drives the state
  ECS reports instead, by these rules:
  * minimumHealthyPercent 100 / maximumPercent 200: new tasks start first; old tasks are deregistered from
    the target group only once the new ones are healthy. A deregistering target gets no new connections and
    is stopped (SIGTERM) only when its connections have ended or the deregistration delay has run out.
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-type-ecs.html
    https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html#deregistration-delay
  * the deployment circuit breaker marks the failing deployment rolloutState FAILED and rolls back: a new
    PRIMARY deployment of the last completed task definition, which then completes like any other.
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-circuit-breaker.html
  * rolloutState COMPLETED once the service reached steady state on the deployment (old tasks gone).
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Deployment.html
- one-off tasks: moto never runs a container; the release task is reported STOPPED with the exit code the
  test chose, and its command override is recorded.
- App Runner (not in moto): UpdateService starts an operation; ListOperations reports it SUCCEEDED or, after
  a failed deployment, ROLLBACK_SUCCEEDED while the service status goes back to RUNNING. UpdateService's
  SourceConfiguration replaces the service's one.
  https://docs.aws.amazon.com/apprunner/latest/api/API_UpdateService.html
  https://docs.aws.amazon.com/apprunner/latest/api/API_OperationSummary.html
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from moto.moto_server.threaded_moto_server import ThreadedMotoServer

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines

ACCOUNT = "123456789012"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Call:
    """One AWS API call as IAM sees it: the action, the resource ARN and the condition keys it carries."""

    seq: int
    action: str
    resource: str
    params: dict[str, Any]
    context: dict[str, str] = field(default_factory=dict)


def arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def ecs_arn(kind: str, cluster: str, name: str) -> str:
    """Task and service ARNs in the long format (with the cluster), what IAM policies are written against."""
    if name.startswith("arn:"):
        name = name.rsplit("/", 1)[-1]
    return arn("ecs", f"{kind}/{cluster.rsplit('/', 1)[-1]}/{name}")


# --- ECS rolling deployments ----------------------------------------------------------------------------


@dataclass
class Rollout:
    """One rolling deployment of a service, advanced by one step each time the service is described.

    `old_calls_end` gives, for each old task, the step at which its last live call ends; the task stops then
    (calls are capped below 60 min, inside the 3600 s deregistration delay, so the delay never cuts one).
    With `fails`, the new tasks never get healthy and the circuit breaker rolls back after two failed tasks.
    """

    old: str
    new: str
    desired: int
    old_calls_end: list[int]
    fails: bool = False
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def deployments(self) -> list[dict[str, Any]]:
        self.step += 1
        step = self.step
        new_id, old_id = "ecs-svc/new", "ecs-svc/old"
        if self.fails:
            if step < 3:
                return [
                    _deployment(new_id, self.new, "PRIMARY", "IN_PROGRESS", 0, self.desired, failed=step),
                    _deployment(old_id, self.old, "ACTIVE", "COMPLETED", self.desired, self.desired),
                ]
            failed = _deployment(new_id, self.new, "ACTIVE", "FAILED", 0, 0, failed=2)
            failed["rolloutStateReason"] = "ECS deployment circuit breaker: tasks failed to start."
            back = _deployment("ecs-svc/rollback", self.old, "PRIMARY", "IN_PROGRESS", self.desired, self.desired)
            if step == 3:
                return [back, failed]
            back["rolloutState"] = "COMPLETED"
            return [back]
        # Step 1: new tasks starting. Step 2: healthy and registered; the old ones are deregistered now and
        # keep only the calls they carry. From then on an old task stops once its last call has ended.
        new_running = 0 if step == 1 else self.desired
        old_running = self.desired if step <= 2 else sum(1 for end in self.old_calls_end if end > step)
        if old_running:
            return [
                _deployment(new_id, self.new, "PRIMARY", "IN_PROGRESS", new_running, self.desired),
                _deployment(old_id, self.old, "ACTIVE", "COMPLETED", old_running, self.desired),
            ]
        return [_deployment(new_id, self.new, "PRIMARY", "COMPLETED", self.desired, self.desired)]


def _deployment(
    dep_id: str, taskdef: str, status: str, rollout: str, running: int, desired: int, failed: int = 0
) -> dict[str, Any]:
    return {
        "id": dep_id,
        "status": status,
        "taskDefinition": taskdef,
        "desiredCount": desired,
        "runningCount": running,
        "pendingCount": max(0, desired - running) if rollout == "IN_PROGRESS" else 0,
        "failedTasks": failed,
        "rolloutState": rollout,
        "rolloutStateReason": f"ECS deployment {dep_id} {rollout.lower().replace('_', ' ')}.",
        "launchType": "FARGATE",
    }


# --- App Runner ------------------------------------------------------------------------------------------


@dataclass
class AppRunnerService:
    arn: str
    source: dict[str, Any]
    fails: bool = False
    status: str = "RUNNING"
    operations: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[str, Any] | None = None
    polls: int = 0


class FakeAws:
    """moto + the proxy. `calls` lists every call made through `endpoint`, in order."""

    def __init__(self) -> None:
        self.moto_port = free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        self.calls: list[Call] = []
        self.rollouts: dict[str, Rollout] = {}
        self.rollout_plans: dict[str, dict[str, Any]] = {}
        self.release_exit_codes: list[int] = []  # for the next release tasks, in order (default 0)
        self._exit_codes: dict[str, int] = {}
        self.release_commands: list[list[str]] = []
        self.release_environments: list[dict[str, str]] = []
        self.apprunner: dict[str, AppRunnerService] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = fake.handle(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.proxy = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.proxy.server_address[1]}"
        self.moto_endpoint = f"http://127.0.0.1:{self.moto_port}"

    def start(self) -> FakeAws:
        self.moto.start()
        threading.Thread(target=self.proxy.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.proxy.shutdown()
        self.moto.stop()

    def reset(self) -> None:
        """A fresh account: moto's state and the fakes' state."""
        http.client.HTTPConnection("127.0.0.1", self.moto_port).request("POST", "/moto-api/reset")
        self.calls.clear()
        self.rollouts.clear()
        self.rollout_plans.clear()
        self.release_exit_codes.clear()
        self._exit_codes.clear()
        self.release_commands.clear()
        self.release_environments.clear()
        self.apprunner.clear()

    # --- recording ---------------------------------------------------------------------------------------

    def record(self, action: str, resource: str, params: dict[str, Any], **context: str) -> None:
        with self._lock:
            self.calls.append(Call(len(self.calls), action, resource, params, context))

    def actions(self) -> list[str]:
        return [call.action for call in self.calls]

    # --- dispatch ----------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        auth = headers.get("Authorization", "")
        match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
        service = match.group(1) if match else ""
        target = headers.get("X-Amz-Target", "")
        if target:
            operation = target.rsplit(".", 1)[-1]
            params = json.loads(body or b"{}")
            if service == "apprunner":
                return self._apprunner(operation, params)
            self._record_json(service, operation, params)
            before = self._current_taskdef(params["service"]) if operation == "UpdateService" else ""
            status, out_headers, payload = self._forward(method, path, headers, body)
            if service == "ecs" and status == 200:
                payload = self._ecs_after(operation, params, json.loads(payload), before)
            return status, out_headers, payload
        if service in ("cloudformation", "sts", "ec2", "iam"):
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            operation = form.get("Action", "")
            if service == "cloudformation":
                name = form.get("StackName", "*")
                self.record(f"cloudformation:{operation}", arn("cloudformation", f"stack/{name}/*"), form)
            elif service != "sts":
                raise AssertionError(f"the release made an unexpected {service} call: {operation}")
            return self._forward(method, path, headers, body)
        if service == "lambda":
            self._record_lambda(method, path, body)
        elif service == "s3":
            self._record_s3(method, path)
        else:
            raise AssertionError(f"the release called {service} {method} {path}, which this fake does not know")
        return self._forward(method, path, headers, body)

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=60)
        headers = {k: v for k, v in headers.items() if k.lower() not in ("connection", "expect")}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        conn.close()
        return response.status, response.getheaders(), payload

    # --- IAM action + resource of each call ----------------------------------------------------------------

    def _record_json(self, service: str, operation: str, params: dict[str, Any]) -> None:
        action = f"{service}:{operation}"
        if service == "ecr":
            resource = (
                "*" if operation == "GetAuthorizationToken" else arn("ecr", f"repository/{params['repositoryName']}")
            )
            self.record(action, resource, params)
        elif service == "ssm":
            self.record(action, arn("ssm", f"parameter{params['Name']}"), params)
        elif service == "ecs":
            self._record_ecs(action, operation, params)
        else:
            raise AssertionError(f"the release made an unexpected {service} call: {operation}")

    def _record_ecs(self, action: str, operation: str, params: dict[str, Any]) -> None:
        cluster = params.get("cluster", "default")
        cluster_arn = arn("ecs", f"cluster/{cluster.rsplit('/', 1)[-1]}")
        if operation in ("DescribeServices", "UpdateService"):
            for name in params.get("services") or [params.get("service")]:
                self.record(action, ecs_arn("service", cluster, name), params, **{"ecs:cluster": cluster_arn})
        elif operation == "DescribeTasks":
            for task in params["tasks"]:
                self.record(action, ecs_arn("task", cluster, task), params, **{"ecs:cluster": cluster_arn})
        elif operation == "RunTask":
            taskdef = params["taskDefinition"]
            if not taskdef.startswith("arn:"):
                taskdef = arn("ecs", f"task-definition/{taskdef}")
            self.record(action, taskdef, params, **{"ecs:cluster": cluster_arn})
            # RunTask passes the task definition's roles to ECS, so it needs iam:PassRole for them.
            # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html
            self._pass_roles(self._task_definition(taskdef), params)
        elif operation == "RegisterTaskDefinition":
            self.record(action, "*", params)  # no resource-level permissions for this action
            self._pass_roles(params, params)
        elif operation == "DescribeTaskDefinition":
            self.record(action, "*", params)
        else:
            raise AssertionError(f"the release made an unexpected ECS call: {operation}")

    def _pass_roles(self, taskdef: dict[str, Any], params: dict[str, Any]) -> None:
        for key in ("taskRoleArn", "executionRoleArn"):
            if taskdef.get(key):
                self.record("iam:PassRole", taskdef[key], params, **{"iam:PassedToService": "ecs-tasks.amazonaws.com"})

    def _task_definition(self, taskdef_arn: str) -> dict[str, Any]:
        from moto.ecs.models import ecs_backends

        found = ecs_backends[ACCOUNT][REGION].describe_task_definition(taskdef_arn)
        return {"taskRoleArn": found.task_role_arn, "executionRoleArn": found.execution_role_arn}

    def _record_lambda(self, method: str, path: str, body: bytes) -> None:
        match = re.match(r"^/2015-03-31/functions/([^/?]+)(/[a-z]+)?", path)
        assert match, f"unexpected Lambda call {method} {path}"
        function = arn("lambda", f"function:{unquote(match.group(1)).rsplit(':', 1)[-1]}")
        operation = {
            ("PUT", "/code"): "UpdateFunctionCode",
            ("GET", None): "GetFunction",
            ("GET", "/configuration"): "GetFunctionConfiguration",
        }[(method, match.group(2))]
        params = json.loads(body or b"{}")
        self.record(f"lambda:{operation}", function, params)
        if operation == "UpdateFunctionCode" and "S3Bucket" in params:
            # Lambda reads the new code from S3 with the caller's permissions.
            # https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionCode.html ("S3Bucket: An Amazon
            # S3 bucket in the same AWS Region as your function"; the caller needs s3:GetObject on the key)
            self.record("s3:GetObject", f"arn:aws:s3:::{params['S3Bucket']}/{params['S3Key']}", params)

    def _record_s3(self, method: str, path: str) -> None:
        parts = urlsplit(path)
        bucket, _, key = parts.path.lstrip("/").partition("/")
        assert key, f"unexpected S3 call {method} {path}"
        # Multipart uploads (create, parts, complete) are all authorized as s3:PutObject.
        action = {"PUT": "s3:PutObject", "POST": "s3:PutObject", "GET": "s3:GetObject", "HEAD": "s3:GetObject"}
        self.record(action[method], f"arn:aws:s3:::{bucket}/{unquote(key)}", {"query": parts.query})

    # --- ECS answers moto does not model ---------------------------------------------------------------------

    def plan_rollout(self, service: str, *, old_calls_end: list[int] | None = None, fails: bool = False) -> None:
        """How the next deployment of `service` goes (default: two old tasks whose calls end at once)."""
        self.rollout_plans[service] = {"old_calls_end": old_calls_end or [0, 0], "fails": fails}

    def _ecs_after(self, operation: str, params: dict[str, Any], answer: dict[str, Any], previous: str) -> bytes:
        """Rewrites moto's answer; `previous` is the service's task definition before an UpdateService."""
        if operation == "UpdateService" and params.get("taskDefinition"):
            service = answer["service"]
            name = service["serviceName"]
            plan = self.rollout_plans.get(name, {"old_calls_end": [0] * service["desiredCount"], "fails": False})
            self.rollouts[name] = Rollout(previous, params["taskDefinition"], service["desiredCount"], **plan)
        elif operation == "DescribeServices":
            for service in answer["services"]:
                rollout = self.rollouts.get(service["serviceName"])
                if rollout is None:
                    service["deployments"] = [
                        _deployment(
                            "ecs-svc/current",
                            service["taskDefinition"],
                            "PRIMARY",
                            "COMPLETED",
                            service["desiredCount"],
                            service["desiredCount"],
                        )
                    ]
                    continue
                deployments = rollout.deployments()
                rollout.history.append({"step": rollout.step, "deployments": deployments})
                service["deployments"] = deployments
                primary = deployments[0]
                service["taskDefinition"] = primary["taskDefinition"]
                service["runningCount"] = sum(d["runningCount"] for d in deployments)
        elif operation == "RunTask":
            self.release_commands.append(params["overrides"]["containerOverrides"][0]["command"])
            env = params["overrides"]["containerOverrides"][0].get("environment", [])
            self.release_environments.append({kv["name"]: kv["value"] for kv in env})
            for task in answer["tasks"]:
                self._exit_codes[task["taskArn"]] = self.release_exit_codes.pop(0) if self.release_exit_codes else 0
        elif operation == "DescribeTasks":
            for task in answer["tasks"]:
                code = self._exit_codes[task["taskArn"]]
                task["lastStatus"] = task["desiredStatus"] = "STOPPED"
                task["stopCode"] = "EssentialContainerExited"
                for container in task["containers"]:
                    container["lastStatus"] = "STOPPED"
                    container["exitCode"] = code
        return json.dumps(answer).encode()

    def _current_taskdef(self, service_name: str) -> str:
        service_name = service_name.rsplit("/", 1)[-1]
        rollout = self.rollouts.get(service_name)
        if rollout is not None:
            return rollout.old if rollout.fails else rollout.new
        from moto.ecs.models import ecs_backends

        for key, service in ecs_backends[ACCOUNT][REGION].services.items():
            if key.endswith(f":{service_name}"):
                return service.task_definition
        raise AssertionError(f"no ECS service {service_name}")

    # --- App Runner (not in moto) ------------------------------------------------------------------------------

    def add_apprunner_service(self, name: str, source: dict[str, Any], *, fails: bool = False) -> str:
        service_arn = arn("apprunner", f"service/{name}/{uuid.uuid4().hex}")
        self.apprunner[service_arn] = AppRunnerService(service_arn, source, fails=fails)
        return service_arn

    @staticmethod
    def _apprunner_advance(service: AppRunnerService) -> None:
        """An operation ends on the second look at the service, whichever call that is."""
        current = service.operations[0] if service.operations else None
        if not current or current["Status"] != "IN_PROGRESS":
            return
        service.polls += 1
        if service.polls < 2:
            return
        if service.fails:
            current["Status"] = "ROLLBACK_SUCCEEDED"
        else:
            current["Status"] = "SUCCEEDED"
            service.source = service.pending or service.source
        service.status = "RUNNING"

    def _apprunner(self, operation: str, params: dict[str, Any]) -> tuple[int, list, bytes]:
        service = self.apprunner[params["ServiceArn"]]
        self.record(f"apprunner:{operation}", service.arn, params)
        if operation in ("DescribeService", "ListOperations"):
            self._apprunner_advance(service)
        if operation == "DescribeService":
            answer: dict[str, Any] = {
                "Service": {"ServiceArn": service.arn, "Status": service.status, "SourceConfiguration": service.source}
            }
        elif operation == "UpdateService":
            operation_id = uuid.uuid4().hex
            service.pending = params["SourceConfiguration"]
            service.status = "OPERATION_IN_PROGRESS"
            service.operations.insert(0, {"Id": operation_id, "Type": "UPDATE_SERVICE", "Status": "IN_PROGRESS"})
            service.polls = 0
            answer = {"Service": {"ServiceArn": service.arn, "Status": service.status}, "OperationId": operation_id}
        elif operation == "ListOperations":
            answer = {"OperationSummaryList": service.operations}
        else:
            raise AssertionError(f"the release made an unexpected App Runner call: {operation}")
        return 200, [("Content-Type", "application/x-amz-json-1.0")], json.dumps(answer).encode()
