from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class OpenChargebackAdminConfig(AdminConfig):
    """Installs :class:`openchargeback.admin.OpenChargebackAdminSite` as the default site."""

    default_site = "openchargeback.admin.OpenChargebackAdminSite"


class OpenChargebackConfig(AppConfig):
    """The project package as an app: its static files (charts, dashboard styles)."""

    name = "openchargeback"
    verbose_name = "OpenChargeback"

    def ready(self) -> None:
        # After the admin's autodiscovery (the admin app comes first in
        # INSTALLED_APPS): django-q2's pages under our roles, and the period
        # and owner pages with what the other apps hold (billing imports none).
        from django.contrib import admin

        from openchargeback import overviews, q_admin

        q_admin.install(admin.site)
        overviews.install(admin.site)
