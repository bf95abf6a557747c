"""Local mode (SQLite) holds a burst of calls ending together with their status callbacks: no "database is
locked", no call left "in progress". Run in a fresh interpreter on its own SQLite file, since the suite itself
may run on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.servers import ROOT

BURST = r"""
import json, threading, django
django.setup()
from concurrent.futures import ThreadPoolExecutor
from django.core.management import call_command
from django.db import connection
from calls import services
from calls.models import Call

call_command("migrate", verbosity=0)
calls = []
for i in range(40):
    call = services.start_call(f"CA{i:032x}", "AC" + "0" * 32, "+14155550100", "+15005550006", None)
    services.claim_stream(call.twilio_call_sid, f"MZ{i:032x}", "local")
    calls.append(call)

errors = []
start = threading.Barrier(16)
seen = set()

def once(fn, *args):
    ident = threading.get_ident()
    if ident not in seen:
        seen.add(ident)
        start.wait()
    try:
        fn(*args)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()

def bridge_end(call):
    services.add_events(call.pk, [{"seq": n, "kind": "transcript", "text": "hi"} for n in range(20)])
    services.finish_call(call.pk, "caller_hangup", {"input_tokens": 10, "output_tokens": 5})

def status_callback(call):
    services.apply_status_callback(call.twilio_call_sid, "completed", 3)

with ThreadPoolExecutor(16) as pool:
    for call in calls:
        pool.submit(once, bridge_end, call)
        pool.submit(once, status_callback, call)
stuck = Call.objects.filter(status=Call.Status.IN_PROGRESS).count()
print(json.dumps({"errors": errors, "stuck": stuck}))
"""


def test_sqlite_holds_a_burst_of_calls_ending_with_their_status_callbacks(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "voiceops.settings", "LOG_LEVEL": "ERROR",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'burst.sqlite3'}"}
    done = subprocess.run([sys.executable, "-c", BURST], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"errors": [], "stuck": 0}
