"""A local fake of Twilio's REST API for outbound calls, on loopback, for tests and local trials.

Point the `twilio` library at it with TWILIO_API_BASE_URL. It speaks what the library and voiceops rely on:

- `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` (form-encoded, HTTP Basic auth AccountSid:AuthToken)
  → 201 and the Call resource JSON (`sid` CA…, `status` "queued", `direction` "outbound-api", …).
- `GET  …/Calls/{CallSid}.json` → 200 and the resource; unknown SID → 404 (error 20404).
- `POST …/Calls/{CallSid}.json` with `Twiml`, `Url` or `Status` (completed/canceled): updating a live call.
- Errors as Twilio's JSON: `{"code", "message", "more_info", "status"}` with the HTTP status, which the library
  turns into `TwilioRestException(status, uri, msg, code)`:
  bad credentials or a suspended account → 401 / 20003; `To` missing → 21201, not a phone number → 21211;
  `From` missing → 21213; (a +1 number must have ten digits after the country code, as Twilio checks
  each country's numbering plan, not just E.164's shape); no `Url`/`Twiml`/`ApplicationSid` → 21205;
  Twilio's documented test ("magic") numbers: To +15005550001 → 21217 (invalid), +15005550002 → 21214
  (cannot route), +15005550003 → 21215 (geo permissions), +15005550004 → 21216 (blocked);
  From +15005550001 → 21212 (invalid), a From the account does not own → 21210.
  Numbers in `geo_blocked_prefixes` also get 21215, the error a real account gives for a country its geo
  permissions do not allow.

Then the far end, played by the test (`answer`, `amd_result`, `complete`): Twilio's requests to voiceops,
form-encoded and signed with the auth token (X-Twilio-Signature over the URL given in the create request):
call status callbacks for the events asked in `StatusCallbackEvent`, the `Url` webhook when the callee
answers (its TwiML reply is returned, parsed), and the async AMD verdict (`AnsweredBy`) to
`AsyncAmdStatusCallback`.

    python -m calls.simulators.twilio_rest --port 8766 --account-sid AC… --auth-token … --number +15005550006
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from calls.simulators.twilio_caller import TwimlReply, parse_twiml, signed_webhook_post

API_VERSION = "2010-04-01"
PHONE = re.compile(r"^\+?[1-9]\d{6,14}$")
MAGIC_TO_ERRORS = {
    "+15005550001": (21217, "Phone number does not appear to be valid"),
    "+15005550002": (21214, "'To' phone number cannot be reached"),
    "+15005550003": (21215, "Account not authorized to call {to}. Perhaps you need to enable some "
                            "international permissions: https://www.twilio.com/console/voice/calls/geo-permissions/low-risk"),
    "+15005550004": (21216, "Call blocked by Twilio blocklist"),
}
MAGIC_VALID_FROM = "+15005550006"


class TwilioError(Exception):
    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status, self.code, self.message = http_status, code, message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}", "status": self.http_status}


@dataclass
class FakeCall:
    sid: str
    account_sid: str
    params: dict[str, list[str]]
    status: str = "queued"
    answered_by: str | None = None
    updates: list[dict[str, str]] = field(default_factory=list)  # each POST to the call, in order
    created_at: float = field(default_factory=time.time)

    def param(self, name: str, default: str = "") -> str:
        return self.params.get(name, [default])[0]

    def resource(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}.json"
        return {
            "sid": self.sid, "account_sid": self.account_sid, "api_version": API_VERSION,
            "to": self.param("To"), "to_formatted": self.param("To"),
            "from": self.param("From"), "from_formatted": self.param("From"),
            "status": self.status, "direction": "outbound-api", "answered_by": self.answered_by,
            "date_created": formatdate(self.created_at, usegmt=True),
            "date_updated": formatdate(time.time(), usegmt=True),
            "start_time": None, "end_time": None, "duration": None, "price": None, "price_unit": "USD",
            "parent_call_sid": None, "phone_number_sid": None, "caller_name": None, "forwarded_from": None,
            "group_sid": None, "queue_time": "0", "trunk_sid": None, "annotation": None,
            "uri": uri, "subresource_uris": {
                "notifications": uri.replace(".json", "/Notifications.json"),
                "recordings": uri.replace(".json", "/Recordings.json"),
            },
        }


class TwilioRestFake:
    """The fake account: its credentials, the numbers it owns, and the calls placed through it."""

    def __init__(self, account_sid: str, auth_token: str, numbers: tuple[str, ...] = (MAGIC_VALID_FROM,),
                 geo_blocked_prefixes: tuple[str, ...] = ()) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.numbers = set(numbers) | {MAGIC_VALID_FROM}
        self.geo_blocked_prefixes = geo_blocked_prefixes
        self.suspended = False
        self.calls: dict[str, FakeCall] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url: str | None = None

    # --- the server -------------------------------------------------------------------------------
    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                status, payload = fake.handle(method, self.path, self.headers.get("Authorization", ""), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Twilio-Request-Id", "RQ" + uuid.uuid4().hex)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="twilio-rest-fake", daemon=True).start()
        self.url = f"http://{host}:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- the API ----------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, authorization: str, body: str) -> tuple[int, dict[str, Any]]:
        path = urlsplit(raw_path).path
        with self._lock:
            self.requests.append((method, path))
        try:
            self._authenticate(authorization)
            match = re.fullmatch(rf"/{API_VERSION}/Accounts/(AC\w+)/Calls(?:/(CA\w+))?\.json", path)
            if match is None:
                raise TwilioError(404, 20404, f"The requested resource {path} was not found")
            if match.group(1) != self.account_sid:
                raise TwilioError(403, 20003, "Authenticate")
            params = parse_qs(body, keep_blank_values=True)
            sid = match.group(2)
            if sid is None and method == "POST":
                return 201, self._create(params).resource()
            if sid is None:
                raise TwilioError(405, 20004, "Method not allowed")
            call = self.calls.get(sid)
            if call is None:
                raise TwilioError(404, 20404, f"The requested resource {path} was not found")
            if method == "POST":
                self._update(call, params)
            return 200, call.resource()
        except TwilioError as exc:
            return exc.http_status, exc.body()

    def _authenticate(self, authorization: str) -> None:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if self.suspended or authorization != f"Basic {expected}":
            raise TwilioError(401, 20003, "Authenticate")

    def _create(self, params: dict[str, list[str]]) -> FakeCall:
        to, from_ = params.get("To", [""])[0], params.get("From", [""])[0]
        if not to:
            raise TwilioError(400, 21201, "No 'To' number is specified")
        if not from_:
            raise TwilioError(400, 21213, "No 'From' number is specified")
        if not any(params.get(k, [""])[0] for k in ("Url", "Twiml", "ApplicationSid")):
            raise TwilioError(400, 21205, "Url parameter is required.")
        if from_ == "+15005550001" or not PHONE.match(from_):
            raise TwilioError(400, 21212, f"The 'From' number {from_} is not a valid phone number.")
        if from_ not in self.numbers:
            raise TwilioError(400, 21210, f"The source phone number provided, {from_}, is not yet verified "
                                          "for your account. You may only make calls from phone numbers "
                                          "that you've verified or purchased from Twilio.")
        if not PHONE.match(to) or (to.startswith("+1") and len(to) != 12):  # NANP: +1 and ten digits
            raise TwilioError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in MAGIC_TO_ERRORS:
            code, message = MAGIC_TO_ERRORS[to]
            raise TwilioError(400, code, message.format(to=to))
        if to.startswith(self.geo_blocked_prefixes):
            raise TwilioError(400, 21215, MAGIC_TO_ERRORS["+15005550003"][1].format(to=to))
        call = FakeCall(sid="CA" + uuid.uuid4().hex, account_sid=self.account_sid, params=params)
        with self._lock:
            self.calls[call.sid] = call
        return call

    def _update(self, call: FakeCall, params: dict[str, list[str]]) -> None:
        update = {k: v[0] for k, v in params.items()}
        if not update:
            raise TwilioError(400, 21218, "Invalid ApplicationSid")  # Twilio needs something to change
        status = update.get("Status")
        if status and status not in {"completed", "canceled"}:
            raise TwilioError(400, 21220, "Invalid call state for this operation")
        if call.status in {"completed", "canceled", "failed", "busy", "no-answer"}:
            raise TwilioError(400, 21220, "Call is not in-progress. Cannot redirect.")
        call.updates.append(update)
        if status:
            call.status = status

    # --- the far end: Twilio's requests to voiceops ------------------------------------------------
    def _post(self, call: FakeCall, url: str, params: dict[str, str]) -> tuple[int, str]:
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        return signed_webhook_post(base, parts.path, params, self.auth_token)

    def _call_params(self, call: FakeCall, status: str) -> dict[str, str]:
        return {
            "AccountSid": call.account_sid, "ApiVersion": API_VERSION, "CallSid": call.sid, "CallStatus": status,
            "Direction": "outbound-api", "From": call.param("From"), "To": call.param("To"),
            "Called": call.param("To"), "Caller": call.param("From"),
        }

    def status_callback(self, sid: str, status: str, duration_s: int | None = None) -> int | None:
        """The status callback for `status`, if the create request asked for that event (Twilio sends
        only `completed` when StatusCallbackEvent is absent)."""
        call = self.calls[sid]
        call.status = status
        url = call.param("StatusCallback")
        wanted = call.params.get("StatusCallbackEvent") or ["completed"]
        event = "answered" if status == "in-progress" else status
        if not url or (event not in wanted and status not in {"busy", "failed", "no-answer", "canceled"}):
            return None
        params = self._call_params(call, status)
        params.update(Timestamp=formatdate(time.time(), usegmt=True).replace("GMT", "+0000"),
                      CallbackSource="call-progress-events", SequenceNumber=str(len(call.updates)))
        if duration_s is not None:
            params["CallDuration"] = str(duration_s)
        return self._post(call, url, params)[0]

    def answer(self, sid: str) -> tuple[int, TwimlReply]:
        """The callee picks up: initiated/ringing/answered callbacks, then the `Url` webhook; its TwiML."""
        call = self.calls[sid]
        for status in ("initiated", "ringing", "in-progress"):
            self.status_callback(sid, status)
        params = self._call_params(call, "in-progress")
        status, body = self._post(call, call.param("Url"), params)
        return status, parse_twiml(body) if status == 200 else TwimlReply(kind="invalid", error=f"HTTP {status}")

    def amd_result(self, sid: str, answered_by: str, duration_ms: int = 3200) -> int:
        """Async AMD's verdict to AsyncAmdStatusCallback (only when the create request enabled it)."""
        call = self.calls[sid]
        url = call.param("AsyncAmdStatusCallback")
        if not (call.param("MachineDetection") and call.param("AsyncAmd") == "true" and url):
            raise AssertionError("this call was placed without async answering-machine detection")
        call.answered_by = answered_by
        params = {"AccountSid": call.account_sid, "CallSid": call.sid, "AnsweredBy": answered_by,
                  "MachineDetectionDuration": str(duration_ms)}
        return self._post(call, url, params)[0]

    def complete(self, sid: str, duration_s: int = 5) -> int | None:
        return self.status_callback(sid, "completed", duration_s)


def main() -> None:
    parser = argparse.ArgumentParser(description="A local fake of Twilio's REST API (outbound calls).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--number", action="append", default=[], help="A number the account owns (E.164).")
    args = parser.parse_args()
    fake = TwilioRestFake(args.account_sid, args.auth_token, tuple(args.number))
    sys.stdout.write(f"Twilio REST fake on {fake.start_in_thread(args.host, args.port)}\n")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    fake.stop()


if __name__ == "__main__":
    main()
