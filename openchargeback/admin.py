"""The branded admin site: the admin is OpenChargeback's user interface."""

from __future__ import annotations

from django.contrib import admin


class OpenChargebackAdminSite(admin.AdminSite):
    site_header = "OpenChargeback"
    site_title = "OpenChargeback"
    index_title = "Research computing billing"
