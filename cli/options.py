"""Option types shared by commands (one definition each)."""

from __future__ import annotations

from typing import Annotated

import typer

Json = Annotated[bool, typer.Option("--json", help="Print one JSON object (JSON lines for "
                                    "listings) instead of text.")]
As = Annotated[str | None, typer.Option(
    "--as", metavar="ACTOR",
    help="Act as this local actor (default: the configured default or the only one).")]
