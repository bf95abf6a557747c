from django.urls import path

from calls import views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("partials/live-calls", views.live_calls_partial, name="live_calls"),
    path("calls/", views.history, name="history"),
    path("calls/export.<str:fmt>", views.export, name="export"),
    path("calls/<int:pk>/", views.call_detail, name="call"),
    path("calls/<int:pk>/events.json", views.call_events, name="call_events"),
    path("test-call/", views.test_call, name="test_call"),
    path("test-call/<int:config_id>/start", views.test_call_start, name="test_call_start"),
    path("outbound/", views.place_call, name="place_call"),
]
