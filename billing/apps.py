from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # Approved charges in another currency without a rate are among the
        # data checks of close and finalize (billing.blockers.period_blockers).
        from billing import checks  # noqa: F401  (registers the system checks)
