"""URLs of the full app: admin, dashboard, the Twilio webhooks (also served by Lambda) and health."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from bridge import health
from calls import api

admin.site.site_header = "voiceops"
admin.site.site_title = "voiceops admin"
admin.site.index_title = "Agents, numbers and calls"

urlpatterns = [
    path("", RedirectView.as_view(url="/dashboard/", permanent=False)),
    path("admin/", admin.site.urls),
    path("dashboard/", include("calls.urls")),
    path("", include("lambda_webhook.urls")),
    path("api/v1/calls", api.create_call, name="api-calls"),
    path("api/v1/calls/<str:sid>", api.call_status, name="api-call"),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
]
