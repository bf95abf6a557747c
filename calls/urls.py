from django.urls import path

from calls import views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
]
