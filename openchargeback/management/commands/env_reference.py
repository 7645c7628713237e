"""Print the environment reference (Markdown) generated from .env.example."""

from __future__ import annotations

from typing import Any

from billing.commands import BillingCommand
from openchargeback.envdoc import env_example, render


class Command(BillingCommand):
    help = "Print docs/environment.md: every setting of .env.example with its description."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(render(env_example().read_text(encoding="utf-8")), ending="")
