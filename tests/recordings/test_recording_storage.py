"""Recordings: stored through the default storage, served to staff with the listen permission only (byte
ranges locally, a signed short-lived URL on S3), playable on the call page and in admin, deleted with the call."""

from __future__ import annotations

import io
import json
import tempfile
import wave
from array import array
from datetime import timedelta
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from moto import mock_aws

from calls import services
from calls.models import Call
from tests.domain.test_settings import PRODUCTION, run_python
from tests.recordings.conftest import WAV
from tests.web.helpers import make_call

pytestmark = pytest.mark.django_db


def recording_url(call: Call) -> str:
    return reverse("dashboard:recording", args=[call.pk])


def test_save_recording_stores_the_file_and_points_the_call_at_it(recorded_call, media_root):
    name = recorded_call.recording.name
    assert name.startswith("recordings/") and name.endswith(f"{recorded_call.twilio_call_sid}.wav")
    assert (media_root / name).read_bytes() == WAV


def test_save_recording_for_a_call_deleted_meanwhile_leaves_no_file(front_desk, media_root):
    call = make_call(front_desk)
    Call.objects.filter(pk=call.pk).delete()
    with pytest.raises(Call.DoesNotExist):
        services.save_recording(call.pk, WAV)
    assert not list(media_root.rglob("*.wav"))


def test_the_listener_gets_the_file(client, recorded_call, listener):
    client.force_login(listener)
    response = client.get(recording_url(recorded_call))
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    assert response["Accept-Ranges"] == "bytes"
    assert response["Cache-Control"] == "private, no-store"
    assert b"".join(response.streaming_content) == WAV


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, len(WAV) - 1), ("bytes=-50", len(WAV) - 50, len(WAV) - 1),
     ("bytes=10000-99999", 10000, len(WAV) - 1)],
)
def test_byte_ranges_let_the_player_seek(client, recorded_call, listener, header, start, end):
    client.force_login(listener)
    response = client.get(recording_url(recorded_call), HTTP_RANGE=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(WAV)}"
    assert response["Content-Length"] == str(end - start + 1)
    assert b"".join(response.streaming_content) == WAV[start:end + 1]


def test_a_range_past_the_end_is_416(client, recorded_call, listener):
    client.force_login(listener)
    response = client.get(recording_url(recorded_call), HTTP_RANGE=f"bytes={len(WAV) + 5}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(WAV)}"


def test_staff_without_the_permission_are_refused(client, recorded_call, viewer):
    client.force_login(viewer)
    assert client.get(recording_url(recorded_call)).status_code == 403


def test_anonymous_visitors_go_to_the_login(client, recorded_call):
    response = client.get(recording_url(recorded_call))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_no_recording_or_a_missing_file_is_404(client, front_desk, recorded_call, listener, media_root):
    client.force_login(listener)
    assert client.get(recording_url(make_call(front_desk, sid="CA" + "2" * 32))).status_code == 404
    (media_root / recorded_call.recording.name).unlink()
    assert client.get(recording_url(recorded_call)).status_code == 404


def test_the_recordings_directory_is_not_published(client, recorded_call, listener):
    client.force_login(listener)
    assert client.get("/media/" + recorded_call.recording.name).status_code == 404


def test_on_s3_the_view_redirects_to_a_signed_short_lived_url(client, recorded_call, listener, settings):
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": "voiceops-recordings", "custom_domain": None, "querystring_auth": True,
                    "querystring_expire": 300, "signature_version": "s3v4", "file_overwrite": False,
                    "default_acl": None,
                    "region_name": "us-east-1", "access_key": "AKIDTEST", "secret_key": "test-secret"},
    }}
    settings.AWS_S3_CUSTOM_DOMAIN = "static.example.com"  # the static files' CloudFront: never for recordings
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="voiceops-recordings")
        services.save_recording(recorded_call.pk, WAV)  # the settings change gave a fresh default storage
        recorded_call.refresh_from_db()
        client.force_login(listener)
        response = client.get(recording_url(recorded_call))
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert url.hostname.startswith("voiceops-recordings.s3") and url.path.endswith(".wav")
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["300"] and query["X-Amz-Signature"]
    assert response["Cache-Control"] == "private, no-store"


def test_the_call_page_plays_the_recording_for_listeners_only(client, recorded_call, listener, viewer):
    page = reverse("dashboard:call", args=[recorded_call.pk])
    client.force_login(listener)
    html = client.get(page).content.decode()
    assert f'<audio id="vo-recording" controls preload="metadata" src="{recording_url(recorded_call)}"' in html
    assert '<time data-t-ms="3200">' in html and "voiceops/recording.js" in html
    client.force_login(viewer)
    html = client.get(page).content.decode()
    assert "vo-recording" not in html and '<time data-t-ms="3200">' in html


def test_the_admin_call_page_plays_the_recording_for_listeners_only(client, recorded_call, listener, viewer):
    page = reverse("admin:calls_call_change", args=[recorded_call.pk])
    client.force_login(listener)
    html = client.get(page).content.decode()
    assert f'src="{recording_url(recorded_call)}"' in html and "voiceops/recording.js" in html
    client.force_login(viewer)
    assert "vo-recording" not in client.get(page).content.decode()


def test_purge_calls_deletes_the_recording_with_the_call(recorded_call, media_root, front_desk,
                                                         django_capture_on_commit_callbacks):
    path = media_root / recorded_call.recording.name
    kept = make_call(front_desk, sid="CA" + "3" * 32)
    services.save_recording(kept.pk, WAV)
    kept.refresh_from_db()
    Call.objects.filter(pk=recorded_call.pk).update(created_at=timezone.now() - timedelta(days=100))
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_calls", "--older-than", "90d", stdout=StringIO())
    assert not Call.objects.filter(pk=recorded_call.pk).exists() and not path.exists()
    assert (media_root / kept.recording.name).exists()


def test_deleting_a_call_in_admin_deletes_its_recording(admin_client, recorded_call, media_root,
                                                        django_capture_on_commit_callbacks):
    path = media_root / recorded_call.recording.name
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:calls_call_delete", args=[recorded_call.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not path.exists()


def test_a_storage_failure_on_delete_is_logged_not_raised(recorded_call, monkeypatch, caplog):
    def broken(name: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(default_storage, "delete", broken)
    with caplog.at_level("ERROR"):
        services.delete_recording_file(recorded_call.recording.name)
    assert recorded_call.recording.name in caplog.text


STORAGE_OF = """
import json, django
from django.conf import settings
django.setup()
from django.core.files.storage import default_storage, storages
options = settings.STORAGES["default"].get("OPTIONS", {})
print(json.dumps({"backend": settings.STORAGES["default"]["BACKEND"], "options": options,
                  "static": settings.STORAGES["staticfiles"]["BACKEND"],
                  "url": default_storage.url("recordings/2026/11/CA1.wav")}))
"""


def storage_settings(**env: str) -> dict:
    result = run_python({**PRODUCTION, "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "test-secret",
                         "AWS_DEFAULT_REGION": "eu-west-1", **env}, "-c", STORAGE_OF)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_in_aws_recordings_go_to_their_private_bucket_with_signed_urls():
    got = storage_settings(RECORDINGS_BUCKET_NAME="voiceops-prod-recordings", AWS_STORAGE_BUCKET_NAME="static-b",
                           AWS_S3_CUSTOM_DOMAIN="d123.cloudfront.net", RECORDING_URL_TTL_S="120")
    assert got["backend"] == "storages.backends.s3.S3Storage"
    assert got["options"]["bucket_name"] == "voiceops-prod-recordings" and got["options"]["custom_domain"] is None
    assert got["static"].endswith("S3Storage") and got["static"] != got["backend"]  # static keeps its own entry
    url = urlsplit(got["url"])
    assert url.hostname.startswith("voiceops-prod-recordings.s3") and "cloudfront" not in got["url"]
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["120"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]


def test_without_a_recordings_bucket_recordings_are_local_files():
    got = storage_settings(AWS_STORAGE_BUCKET_NAME="static-b")  # never the static files' (public) bucket
    assert got["backend"] == "django.core.files.storage.FileSystemStorage"


def stereo_wav(seconds: float, level: int) -> bytes:
    """A recording as the bridge writes it (8 kHz, 2 channels, 16-bit), every sample at `level`."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(array("h", [level]).tobytes() * int(seconds * 8000) * 2)
    return out.getvalue()


def samples(path) -> array:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        return array("h", wav.readframes(wav.getnframes()))[0::2]  # the left channel is enough here


def test_a_second_stream_after_a_failed_transfer_is_joined_to_the_recording_on_the_calls_timeline(
    front_desk, media_root, settings
):
    """Stream 1: 1 s; the transfer rings 2 s; stream 2 (from 3 s into the call): 1.5 s. One recording of 4.5 s."""
    start = timezone.now() - timedelta(minutes=1)
    call = make_call(front_desk, status=Call.Status.IN_PROGRESS, started_at=start, stream_started_at=start,
                     stream_count=1)
    first = services.save_recording(call.pk, stereo_wav(1, 1000))
    Call.objects.filter(pk=call.pk).update(stream_count=2, stream_started_at=start + timedelta(seconds=3),
                                           transfer_state=Call.TransferState.RETURNED)
    with tempfile.TemporaryFile() as later:  # what the bridge hands over (bridge.consumer._store_recording)
        later.write(stereo_wav(1.5, 2000))
        later.seek(0)
        joined = services.save_recording(call.pk, later)
    assert Call.objects.get(pk=call.pk).recording.name == joined != first
    assert not (media_root / first).exists()  # one recording per call
    left = samples(media_root / joined)
    assert len(left) == 8000 * 4.5
    assert set(left[:8000]) == {1000} and set(left[8000:24000]) == {0} and set(left[24000:]) == {2000}
    # Within the recording's length limit.
    settings.RECORDING_MAX_MINUTES = 0.05  # 3 s
    Call.objects.filter(pk=call.pk).update(stream_count=3, stream_started_at=start + timedelta(seconds=5))
    capped = services.save_recording(call.pk, stereo_wav(1, 3000))
    assert len(samples(media_root / capped)) == 8000 * 3
