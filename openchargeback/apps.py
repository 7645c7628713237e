from django.contrib.admin.apps import AdminConfig


class OpenChargebackAdminConfig(AdminConfig):
    """Installs :class:`openchargeback.admin.OpenChargebackAdminSite` as the default site."""

    default_site = "openchargeback.admin.OpenChargebackAdminSite"
