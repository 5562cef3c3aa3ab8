"""Wording shared by every report: one phrasing everywhere, cheap to import."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 policy`, `2 policies`: the count with the noun in the right number."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"
