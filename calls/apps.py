from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = "Calls and agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from calls import checks  # noqa: F401 -- registers voiceops' system checks
