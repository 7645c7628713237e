from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "ingest"
    verbose_name = "Imports"

    def ready(self) -> None:
        # Which sources the converters price by the rate card: billing asks
        # (billing.ratecard), it does not import ingest.
        from billing.ratecard import register_rate_card_finder
        from ingest.usage.ratecard import rate_card_sources

        register_rate_card_finder("ingest", rate_card_sources)
