from django.apps import AppConfig


class StatementsConfig(AppConfig):
    name = "statements"
    verbose_name = "Statements"

    def ready(self) -> None:
        from billing.services import register_finalize_check
        from statements import checks  # noqa: F401 - registers the system checks
        from statements.selectors import missing_statements

        register_finalize_check("statements", missing_statements)
