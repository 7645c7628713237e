from django.apps import AppConfig


class JournalsConfig(AppConfig):
    name = "journals"
    verbose_name = "Journals"

    def ready(self) -> None:
        from billing.blockers import register_data_check, register_split_pattern
        from billing.services import register_finalize_check
        from journals import checks  # noqa: F401  (registers the system checks)
        from journals.selectors import journal_blockers, missing_journal_export, split_pattern

        register_finalize_check("journals", missing_journal_export)
        register_data_check("journals", journal_blockers)
        register_split_pattern(split_pattern)
