"""Option types shared by commands (one definition each)."""

from __future__ import annotations

from typing import Annotated

import typer

from ledger.errors import InvalidInput

Json = Annotated[bool, typer.Option("--json", help="Print one JSON object (JSON lines for "
                                    "listings) instead of text.")]
As = Annotated[str | None, typer.Option(
    "--as", metavar="ACTOR",
    help="Act as this local actor (default: the configured default or the only one).")]


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    """Refuse a value outside a controlled vocabulary, listing the allowed ones."""
    if value not in allowed:
        raise InvalidInput(f"unknown {what} {value!r}; use one of: " + ", ".join(allowed))
    return value
