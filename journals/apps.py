from django.apps import AppConfig


class JournalsConfig(AppConfig):
    name = "journals"
    verbose_name = "Journals"

    def ready(self) -> None:
        from billing.services import register_finalize_check
        from journals.services import missing_journal_export

        register_finalize_check("journals", missing_journal_export)
