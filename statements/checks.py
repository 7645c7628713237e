"""System checks for the background-job settings statements depend on.

Run by every management command and `openchargeback check`: a cluster that
could hand a running task to a second worker (retry <= timeout) or retry a
failing one forever would render or email twice, or never stop.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.compatibility)
def check_q_cluster(
    app_configs: Any = None,  # noqa: ARG001 - Django passes app_configs by name
    **kwargs: Any,
) -> list[Error]:
    conf = getattr(settings, "Q_CLUSTER", {})
    errors = []
    brokers = [key for key in ("orm", "redis", "sqs", "mongo", "ironmq") if conf.get(key)]
    if len(brokers) != 1:
        errors.append(
            Error(
                "Q_CLUSTER must name exactly one broker (the default is the ORM broker: "
                '"orm": "default").',
                id="openchargeback.E001",
            )
        )
    timeout, retry = conf.get("timeout"), conf.get("retry")
    if not isinstance(timeout, int) or not isinstance(retry, int) or timeout >= retry:
        errors.append(
            Error(
                f"Q_CLUSTER timeout ({timeout}) must be a number of seconds below retry "
                f"({retry}), or a slow task is handed to a second worker while it still runs.",
                hint="Set Q_TIMEOUT lower than Q_RETRY in the environment.",
                id="openchargeback.E002",
            )
        )
    attempts = conf.get("max_attempts")
    if not isinstance(attempts, int) or attempts < 1:
        errors.append(
            Error(
                "Q_CLUSTER max_attempts must be at least 1, or a failing task is retried forever.",
                hint="Set Q_MAX_ATTEMPTS in the environment.",
                id="openchargeback.E003",
            )
        )
    return errors
