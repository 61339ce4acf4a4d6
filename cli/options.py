"""Option types shared by commands (one definition each)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ledger.core.errors import InvalidInput

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


# ---- help rendering --------------------------------------------------------------------
#
# Typer >= 0.20 labels every value with its Python type (``--case <str>``, ``--json <bool>``,
# ``--parent <list[str]>``) and every required argument with braces (``register {file}``).
# The ``custody`` help uses the conventional shape instead: an option's value is named after
# the option in capitals (``--case CASE``, ``--id ID``), unless it has an explicit metavar
# (``--as ACTOR``); a flag has no value; an argument is ``FILE`` (``[FILE]`` if optional).
# Installed once, on import of this module (every command module imports it).


def _option_value(self: Any, ctx: Any) -> str | None:
    if self.metavar is not None:
        return str(self.metavar)
    if self.is_flag or self.count:
        return None
    longs = [o for o in self.opts if o.startswith("--")]
    name = (longs[0][2:] if longs else self.name or "value").replace("-", "_").upper()
    return name + "..." if self.nargs != 1 else name


def _argument_value(self: Any, ctx: Any) -> str | None:
    return None  # the argument's name is already shown; no "<path>" beside it


def _argument_usage(self: Any) -> str:
    name = str(self.metavar or self.name or "arg").upper()
    if self.nargs != 1:
        name += "..."
    return name if self.required else f"[{name}]"


def install_help_style() -> None:
    from typer import core

    core.TyperOption.display_type_rich = _option_value  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = _argument_value  # type: ignore[method-assign]
    core.TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]


install_help_style()
