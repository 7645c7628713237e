from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from openchargeback.health import healthz

# Stored files (statements, journals, kept imports) are never served from
# MEDIA_URL, not even with DEBUG on: only through the admin's views, which
# check the login and the role (docs/security.md, "Files and media").
urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]
