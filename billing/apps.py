from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from billing.services import register_finalize_check, unconverted_charges

        register_finalize_check("currencies", unconverted_charges)
