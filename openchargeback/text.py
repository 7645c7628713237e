"""Wording shared by messages: counts with their noun in the right number."""

from __future__ import annotations


def count(n: int, noun: str, plural: str = "") -> str:
    """``count(1, "charge")`` is "1 charge"; ``count(1_200, "charge")`` is "1,200 charges"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
