"""Logging in: Django's user-and-password check, minus the demo's credentials.

`openchargeback demo` (DEBUG=true only) creates the superuser ``admin`` with
the password ``admin``, printed on screen and in the documentation. A demo
database is sometimes kept and later run with DEBUG off; the demo cannot
take that account back then, so the login does: with DEBUG off, no one
logs in with the demo's password, whatever the user name. The check sits in
the authentication backend, under every way of logging in (the admin's login
page, any view calling ``authenticate``), not in one form.
Giving the account a real password (``openchargeback changepassword admin``)
makes it an ordinary account.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

DEMO_USERNAME = "admin"
DEMO_PASSWORD = "admin"  # noqa: S105 - public on purpose; refused with DEBUG off

logger = logging.getLogger(__name__)


class SiteBackend(ModelBackend):
    """:class:`ModelBackend` that refuses the demo password unless DEBUG is on."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if password == DEMO_PASSWORD and not settings.DEBUG:
            logger.warning(
                "login refused: the demo password works only with DEBUG=true",
                extra={"username": username or kwargs.get("username", "")},
            )
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
