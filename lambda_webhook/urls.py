"""The slim URLconf: only the Twilio webhooks. On Lambda it is the root URLconf; the full app includes it."""

from django.urls import path

from lambda_webhook import views

urlpatterns = [
    path("twilio/voice", views.voice, name="twilio-voice"),
    path("twilio/status", views.status, name="twilio-status"),
    path("twilio/outbound", views.outbound, name="twilio-outbound"),
    path("twilio/amd", views.amd, name="twilio-amd"),
    path("twilio/whisper", views.whisper, name="twilio-whisper"),
    path("twilio/transfer-ended", views.transfer_ended, name="twilio-transfer-ended"),
    path("twilio/stream-ended", views.stream_ended, name="twilio-stream-ended"),
]
