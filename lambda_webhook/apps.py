from django.apps import AppConfig


class LambdaWebhookConfig(AppConfig):
    name = "lambda_webhook"
    verbose_name = "Twilio webhooks"
