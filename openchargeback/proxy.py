"""The client's address, as the reverse proxies in front of the site saw it.

django-axes keys its lockouts on this address (``AXES_CLIENT_IP_CALLABLE``).
Each proxy appends the address it received the connection from to
``X-Forwarded-For`` (nginx: ``$proxy_add_x_forwarded_for``), so behind
``OPENCHARGEBACK_PROXY_COUNT`` = N proxies the last N entries were written by
them and the client is the N-th entry from the right. Whatever stands to the
left of it came from the client itself and is never believed: prepending
addresses neither dodges a lockout nor causes one for someone else.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _address(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR with no proxy configured; behind N
    proxies, the N-th address of X-Forwarded-For counted from the right.

    A request with fewer forwarded addresses than proxies came past some of
    them (or the setting is too high): its leftmost address is then the
    earliest one a proxy of ours wrote. An entry that is not an IP address
    (a misconfigured proxy) is not used; REMOTE_ADDR is.
    """
    remote = request.META.get("REMOTE_ADDR")
    count: int = settings.OPENCHARGEBACK_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [entry for entry in forwarded if entry]
    if not forwarded:
        return remote
    chosen = forwarded[-count] if len(forwarded) >= count else forwarded[0]
    return _address(chosen) or remote
